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

variable "stream_retention_hours" {
  description = "Kinesis retention. Seven days leave room to replay after a long outage or a DLQ investigation."
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

variable "desired_count" {
  description = "Number of ddb2os tasks. Leases spread the stream's shards across all of them."
  type        = number
  default     = 2
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
  description = "Secrets Manager secret holding the libpq connection string (DDB2OS_PG_CONNINFO) of an existing PostgreSQL 13+ database."
  type        = string
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
