variable "region" {
  description = "AWS region of the table, the stream, the tasks and the OpenSearch domain."
  type        = string
  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like eu-west-1."
  }
}

variable "environment" {
  description = "Name of this deployment (dev, prod, ...); prefixes every resource name."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.environment))
    error_message = "environment must be 2-21 lower-case letters, digits or '-'."
  }
}

variable "change_source" {
  # ("source" is a name terraform keeps for itself; this is ddb2os's `source` key.)
  description = "Where ddb2os reads the table's changes: \"kinesis\" (a Kinesis Data Streams destination, microsecond timestamps, up to 365 days of retention, fan-out to other consumers) or \"dynamodb-streams\" (the table's own stream, NEW_AND_OLD_IMAGES, 24 hours, no Kinesis stream to pay for). docs/architecture.md compares them."
  type        = string
  default     = "kinesis"
  validation {
    condition     = contains(["kinesis", "dynamodb-streams"], var.change_source)
    error_message = "change_source must be \"kinesis\" or \"dynamodb-streams\"."
  }
}

variable "stream_retention_hours" {
  description = "Kinesis retention (change_source = kinesis; a DynamoDB stream keeps 24 hours). Seven days leave room to replay after a long outage or a DLQ investigation."
  type        = number
  default     = 168
  validation {
    condition     = var.stream_retention_hours >= 24 && var.stream_retention_hours <= 8760
    error_message = "stream_retention_hours must be 24 to 8760."
  }
}

variable "image" {
  description = "ddb2os container image (ECR URI with tag or digest)."
  type        = string
}

variable "task_cpu" {
  description = "Fargate task CPU units. ddb2os runs one worker process per vCPU."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Fargate task memory (MiB). A worker needs about 10 MB plus two bulk bodies (2 x 5 MiB)."
  type        = number
  default     = 2048
}

variable "subnet_ids" {
  description = "Private subnets for the tasks (they need PostgreSQL, OpenSearch and the AWS APIs, no public IP)."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "vpc_id" {
  description = "VPC of the subnets."
  type        = string
}

variable "security_group_ids" {
  description = "Security groups for the tasks; empty creates an egress-only group."
  type        = list(string)
  default     = []
}

variable "pg_conninfo_secret_arn" {
  description = "With create_postgres = false: Secrets Manager secret holding the libpq connection string (DDB2OS_PG_CONNINFO) of an existing PostgreSQL 13+ database. Ignored when create_postgres is true."
  type        = string
  default     = ""
}

variable "pg_security_group_id" {
  description = "With create_postgres = false: security group of the existing database, so the tasks may reach it on 5432 (an ingress rule from the tasks is added to it). Empty: the tasks may reach 5432 anywhere in the VPC."
  type        = string
  default     = ""
}

variable "create_postgres" {
  description = "Create the PostgreSQL database for leases, checkpoints and the DLQ (RDS or Aurora, see postgres_engine) instead of using an existing one."
  type        = bool
  default     = false
}

variable "postgres_engine" {
  description = "rds (one RDS for PostgreSQL instance, Multi-AZ) or aurora (an Aurora PostgreSQL cluster with two instances)."
  type        = string
  default     = "rds"
  validation {
    condition     = contains(["rds", "aurora"], var.postgres_engine)
    error_message = "postgres_engine must be rds or aurora."
  }
}

variable "postgres_instance_class" {
  description = "Instance class of the database (ddb2os's load on it is small: a few lease renewals and checkpoints per shard and second)."
  type        = string
  default     = "db.t4g.medium"
}

variable "postgres_version" {
  description = "PostgreSQL major.minor version for RDS or Aurora."
  type        = string
  default     = "16.4"
}

variable "pg_iam_auth" {
  description = "With create_postgres: ddb2os logs in as the database user pg_iam_user with RDS IAM authentication (a fresh token per connection, no password in the task). The user must exist with the rds_iam role (README.md)."
  type        = bool
  default     = false
}

variable "pg_iam_user" {
  description = "Database user ddb2os logs in as with pg_iam_auth."
  type        = string
  default     = "ddb2os"
  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.pg_iam_user))
    error_message = "pg_iam_user must be a plain lower-case PostgreSQL identifier."
  }
}

variable "postgres_rotation_days" {
  description = "Days between rotations of the database password that RDS manages in Secrets Manager."
  type        = number
  default     = 30
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for logs, the alarm topic, ECR, the database, its secret, the table and the OpenSearch domain. Empty: this configuration creates one."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "Retention of the task, API and OpenSearch log groups."
  type        = number
  default     = 365
}

variable "min_tasks" {
  description = "Fewest ddb2os tasks the autoscaler keeps (two: one can fail or be replaced while the other holds the leases)."
  type        = number
  default     = 2
}

variable "max_tasks" {
  description = "Most ddb2os tasks the autoscaler starts. More workers than shards only wait for leases: set it near ceil(open shards / workers per task), workers per task being task_cpu / 1024."
  type        = number
  default     = 4
  validation {
    condition     = var.max_tasks >= 1 && var.max_tasks <= 100
    error_message = "max_tasks must be 1 to 100."
  }
}

variable "scale_out_iterator_age_ms" {
  description = "Iterator age (GetRecords.IteratorAgeMilliseconds, maximum over the stream) above which a task is added."
  type        = number
  default     = 60000
}

variable "alarm_iterator_age_ms" {
  description = "Iterator age that raises the lag alarm (the sync is that far behind)."
  type        = number
  default     = 300000
}

variable "alarm_replication_latency_ms" {
  description = "p99 of the time from a change to OpenSearch's answer (ddb2os's ReplicationLatencyP99, per worker and minute) that raises the latency alarm when it holds for 5 minutes."
  type        = number
  default     = 30000
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (empty: subscribe something yourself to the alarm_topic_arn output)."
  type        = string
  default     = ""
}

variable "opensearch_free_storage_mb" {
  description = "FreeStorageSpace (MiB, per node) below which the storage alarm fires."
  type        = number
  default     = 4096
}

variable "opensearch_domain_name" {
  description = "Name of the existing domain (for its alarms); ignored when create_opensearch_domain is true."
  type        = string
  default     = ""
}

variable "opensearch_master_user_arn" {
  description = "With create_opensearch_domain: IAM role or user that becomes the fine-grained access control master user (it maps the task role to a role that may write the index, see README.md)."
  type        = string
  default     = ""
}

variable "create_vpc_endpoints" {
  description = "Create interface endpoints for Kinesis, Secrets Manager, ECR, CloudWatch Logs and a gateway endpoint for S3, so the tasks need no NAT. false: the subnets must route to a NAT gateway (see README.md)."
  type        = bool
  default     = true
}

variable "route_table_ids" {
  description = "Route tables of the task subnets, for the S3 gateway endpoint (ECR image layers come from S3)."
  type        = list(string)
  default     = []
}

variable "manage_api_gateway_account" {
  description = "Set the account-wide API Gateway CloudWatch role (needed once per account and region for execution logs). false when another stack already manages it."
  type        = bool
  default     = true
}

variable "opensearch_domain_arn" {
  description = "ARN of an existing OpenSearch Service domain; ignored when create_opensearch_domain is true."
  type        = string
  default     = ""
}

variable "opensearch_endpoint" {
  description = "HTTPS endpoint of that domain (https://vpc-....es.amazonaws.com); ignored when create_opensearch_domain is true."
  type        = string
  default     = ""
}

variable "create_opensearch_domain" {
  description = "Create a small OpenSearch 2.19 domain in the VPC instead of using an existing one."
  type        = bool
  default     = false
}

variable "index_name" {
  description = "OpenSearch index for the books table."
  type        = string
  default     = "books"
}

variable "metrics_port" {
  description = "Port of the ddb2os health and metrics endpoint inside the task."
  type        = number
  default     = 9090
}

variable "api_throttle_rate" {
  description = "Steady requests per second allowed to the books API."
  type        = number
  default     = 50
}
