# ddb2os on ECS Fargate: each task is a supervisor with one worker process per vCPU; tasks share
# the stream's shards through the lease table in PostgreSQL.

data "aws_caller_identity" "current" {}

resource "aws_cloudwatch_log_group" "ddb2os" {
  name              = "/ecs/${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
}

resource "aws_ecs_cluster" "ddb2os" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Pulls the image, writes logs, reads the database secret (and decrypts it with the CMK).
resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secret" {
  # with pg_iam_auth the tasks need no database secret (not even the administrator's)
  count = local.pg_iam ? 0 : 1
  name  = "read-pg-secret"
  role  = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = var.create_postgres ? local.pg_secret_arn : var.pg_conninfo_secret_arn
      },
      {
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = local.kms_key_arn
      },
    ]
  })
}

# What ddb2os itself may do: read the stream, write the domain. Nothing else.
resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_iam_role_policy" "task" {
  name = "read-stream-write-search"
  role = aws_iam_role.task.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect = "Allow"
        # The task gets the stream's ARN (DDB2OS_STREAM_NAME), so a DynamoDB stream needs no
        # ListStreams: it reads only this stream.
        Action = local.kinesis ? [
          "kinesis:DescribeStreamSummary",
          "kinesis:DescribeStream",
          "kinesis:ListShards",
          "kinesis:GetShardIterator",
          "kinesis:GetRecords",
          ] : [
          "dynamodb:DescribeStream",
          "dynamodb:GetShardIterator",
          "dynamodb:GetRecords",
        ]
        Resource = local.change_stream_arn
      },
      {
        Effect   = "Allow"
        Action   = ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"]
        Resource = "${local.opensearch_arn}/*"
      },
    ]
  })
}

locals {
  # One worker process per vCPU (1024 CPU units), at least one.
  workers = max(1, floor(var.task_cpu / 1024))
  # create_postgres: host etc. in plain text, the password from the RDS-managed secret (libpq reads
  # PGPASSWORD). Otherwise the whole connection string comes from pg_conninfo_secret_arn.
  # pg_iam_auth: no secret at all; ddb2os signs a token per connection with the task role.
  pg_environment = var.create_postgres ? concat([{ name = "DDB2OS_PG_CONNINFO", value = local.pg_conninfo }],
  local.pg_iam ? [{ name = "DDB2OS_PG_IAM_AUTH", value = "true" }] : []) : []
  pg_secrets = local.pg_iam ? [] : var.create_postgres ? [
    { name = "PGPASSWORD", valueFrom = "${local.pg_secret_arn}:password::" },
    ] : [
    { name = "DDB2OS_PG_CONNINFO", valueFrom = var.pg_conninfo_secret_arn },
  ]
}

resource "aws_iam_role_policy" "task_rds_connect" {
  count = local.pg_iam ? 1 : 0
  name  = "rds-iam-connect"
  role  = aws_iam_role.task.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["rds-db:connect"]
      Resource = local.pg_dbuser_arn
    }]
  })
}

resource "aws_ecs_task_definition" "ddb2os" {
  family                   = local.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  container_definitions = jsonencode([{
    name                   = "ddb2os"
    image                  = var.image
    command                = ["run"]
    essential              = true
    readonlyRootFilesystem = true
    user                   = "10001:10001" # ddb2os in the image (scripts/image)
    # SIGTERM drains (finish the batch, checkpoint, release leases); give it time before SIGKILL.
    stopTimeout = 120
    # ddb2os is PID 1 in the image and reaps every child; the init process also reaps what a
    # health check leaves behind.
    linuxParameters = { initProcessEnabled = true }
    environment = concat([
      { name = "DDB2OS_APPLICATION", value = local.name },
      { name = "DDB2OS_SOURCE", value = var.change_source },
      { name = "DDB2OS_STREAM_NAME", value = local.change_stream_name },
      { name = "DDB2OS_AWS_REGION", value = var.region },
      { name = "DDB2OS_OPENSEARCH_URL", value = local.opensearch_endpoint },
      { name = "DDB2OS_OPENSEARCH_AUTH", value = "sigv4" },
      { name = "DDB2OS_OPENSEARCH_SERVICE", value = "es" },
      { name = "DDB2OS_INDEX_MAP", value = "${aws_dynamodb_table.books.name}=${var.index_name}" },
      { name = "DDB2OS_LOG_FORMAT", value = "json" },
      # /healthz for the health check below and /metrics; loopback only, inside the task.
      { name = "DDB2OS_METRICS_PORT", value = tostring(var.metrics_port) },
      # Lag, DLQ and lease counters as CloudWatch metrics (namespace ddb2os; alarms.tf).
      { name = "DDB2OS_LOG_EMF", value = "true" },
      { name = "DDB2OS_WORKERS", value = tostring(local.workers) },
    ], local.pg_environment)
    secrets = local.pg_secrets
    healthCheck = {
      command     = ["CMD-SHELL", "curl -fsS http://127.0.0.1:${var.metrics_port}/healthz || exit 1"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.ddb2os.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "ddb2os"
      }
    }
  }])
}

resource "aws_ecs_service" "ddb2os" {
  name            = local.name
  cluster         = aws_ecs_cluster.ddb2os.id
  task_definition = aws_ecs_task_definition.ddb2os.arn
  desired_count   = var.min_tasks
  launch_type     = "FARGATE"

  # Old and new tasks may overlap during a deployment: that is safe, because a shard is worked only
  # by the holder of its lease and every checkpoint is fenced on the lease. So deploy without a gap.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  # The autoscaler (autoscaling.tf) owns the count after the first apply.
  lifecycle {
    ignore_changes = [desired_count]
    precondition {
      condition     = !var.create_vpc_endpoints || length(var.route_table_ids) > 0
      error_message = "create_vpc_endpoints needs route_table_ids for the S3 gateway endpoint (ECR image layers)."
    }
    precondition {
      condition     = var.create_postgres || var.pg_conninfo_secret_arn != ""
      error_message = "Set create_postgres = true or pg_conninfo_secret_arn."
    }
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = local.task_security_groups
    assign_public_ip = false
  }
}
