# ddb2os on ECS Fargate: each task is a supervisor with one worker process per vCPU; tasks share
# the stream's shards through the lease table in PostgreSQL.

data "aws_caller_identity" "current" {}

resource "aws_security_group" "tasks" {
  count       = length(var.security_group_ids) == 0 ? 1 : 0
  name        = "${local.name}-tasks"
  description = "ddb2os tasks: outbound only"
  vpc_id      = var.vpc_id

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

locals {
  task_security_groups = length(var.security_group_ids) > 0 ? var.security_group_ids : [aws_security_group.tasks[0].id]
}

resource "aws_cloudwatch_log_group" "ddb2os" {
  name              = "/ecs/${local.name}"
  retention_in_days = 30
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

# Pulls the image, writes logs, reads the one secret.
resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secret" {
  name = "read-pg-conninfo"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = var.pg_conninfo_secret_arn
    }]
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
        Action = [
          "kinesis:DescribeStreamSummary",
          "kinesis:DescribeStream",
          "kinesis:ListShards",
          "kinesis:GetShardIterator",
          "kinesis:GetRecords",
        ]
        Resource = aws_kinesis_stream.changes.arn
      },
      {
        Effect   = "Allow"
        Action   = ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"]
        Resource = "${local.opensearch_arn}/*"
      },
    ]
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
    user                   = "65534:65534"
    # SIGTERM drains (finish the batch, checkpoint, release leases); give it time before SIGKILL.
    stopTimeout = 120
    # PID 1 reaps the worker processes' zombies and forwards signals.
    linuxParameters = { initProcessEnabled = true }
    environment = [
      { name = "DDB2OS_APPLICATION", value = local.name },
      { name = "DDB2OS_STREAM_NAME", value = aws_kinesis_stream.changes.name },
      { name = "DDB2OS_AWS_REGION", value = var.region },
      { name = "DDB2OS_OPENSEARCH_URL", value = local.opensearch_endpoint },
      { name = "DDB2OS_OPENSEARCH_AUTH", value = "sigv4" },
      { name = "DDB2OS_OPENSEARCH_SERVICE", value = "es" },
      { name = "DDB2OS_INDEX_MAP", value = "${aws_dynamodb_table.books.name}=${var.index_name}" },
      { name = "DDB2OS_LOG_FORMAT", value = "json" },
      # /healthz for the health check below and /metrics; loopback only, inside the task.
      { name = "DDB2OS_METRICS_PORT", value = tostring(var.metrics_port) },
    ]
    secrets = [
      { name = "DDB2OS_PG_CONNINFO", valueFrom = var.pg_conninfo_secret_arn },
    ]
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
  desired_count   = var.desired_count
  launch_type     = "FARGATE"

  # Old and new tasks may overlap during a deployment: that is safe, because a shard is worked only
  # by the holder of its lease and every checkpoint is fenced on the lease. So deploy without a gap.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

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
