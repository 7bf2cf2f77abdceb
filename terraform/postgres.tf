# Optional PostgreSQL for the lease table, checkpoints and the DLQ: RDS for PostgreSQL (Multi-AZ)
# or Aurora PostgreSQL (writer + reader), reachable only from the tasks' security group.
#
# The password is managed by RDS in Secrets Manager (manage_master_user_password), encrypted with
# the customer-managed key and rotated every postgres_rotation_days. The secret is JSON
# ({"username": ..., "password": ...}); the task gets its "password" field as PGPASSWORD, which
# libpq reads, and the rest of the connection string in DDB2OS_PG_CONNINFO (ecs.tf). A task reads
# the secret when it starts: README.md says how running tasks pick up a rotated password.

locals {
  pg_rds    = var.create_postgres && var.postgres_engine == "rds"
  pg_aurora = var.create_postgres && var.postgres_engine == "aurora"
  pg_host   = local.pg_rds ? aws_db_instance.ddb2os[0].address : local.pg_aurora ? aws_rds_cluster.ddb2os[0].endpoint : ""
  pg_secret_arn = (local.pg_rds ? aws_db_instance.ddb2os[0].master_user_secret[0].secret_arn :
  local.pg_aurora ? aws_rds_cluster.ddb2os[0].master_user_secret[0].secret_arn : "")
  # sslmode=require: libpq 15 in the image has no sslrootcert=system; the connection stays inside the VPC.
  # Besides rds.force_ssl = 1 (every connection encrypted): statements over a second are logged.
  pg_parameters = { "log_min_duration_statement" = "1000" }
  pg_iam        = var.create_postgres && var.pg_iam_auth
  pg_user       = local.pg_iam ? var.pg_iam_user : "ddb2os_admin"
  pg_conninfo   = "host=${local.pg_host} port=5432 dbname=ddb2os user=${local.pg_user} sslmode=require connect_timeout=5"
  # arn:aws:rds-db:REGION:ACCOUNT:dbuser:RESOURCE_ID/USER, what rds-db:connect is granted on
  pg_resource_id = local.pg_rds ? aws_db_instance.ddb2os[0].resource_id : local.pg_aurora ? aws_rds_cluster.ddb2os[0].cluster_resource_id : ""
  pg_dbuser_arn  = "arn:${data.aws_partition.current.partition}:rds-db:${var.region}:${data.aws_caller_identity.current.account_id}:dbuser:${local.pg_resource_id}/${var.pg_iam_user}"
}

resource "aws_security_group" "postgres" {
  count       = var.create_postgres ? 1 : 0
  name        = "${local.name}-postgres"
  description = "PostgreSQL from the ddb2os tasks only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "postgres_from_tasks" {
  count                        = var.create_postgres ? 1 : 0
  security_group_id            = aws_security_group.postgres[0].id
  description                  = "PostgreSQL from the ddb2os tasks"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = local.task_security_groups[0]
}

resource "aws_db_subnet_group" "ddb2os" {
  count      = var.create_postgres ? 1 : 0
  name       = "${local.name}-postgres"
  subnet_ids = var.subnet_ids
}

resource "aws_db_parameter_group" "ddb2os" {
  count  = local.pg_rds ? 1 : 0
  name   = "${local.name}-postgres"
  family = "postgres${split(".", var.postgres_version)[0]}"
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  dynamic "parameter" {
    for_each = local.pg_parameters
    content {
      name  = parameter.key
      value = parameter.value
    }
  }
}

resource "aws_db_instance" "ddb2os" {
  count                               = local.pg_rds ? 1 : 0
  identifier                          = "${local.name}-postgres"
  engine                              = "postgres"
  engine_version                      = var.postgres_version
  instance_class                      = var.postgres_instance_class
  allocated_storage                   = 20
  max_allocated_storage               = 100
  storage_type                        = "gp3"
  storage_encrypted                   = true
  kms_key_id                          = local.kms_key_arn
  db_name                             = "ddb2os"
  username                            = "ddb2os_admin"
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = local.kms_key_arn
  iam_database_authentication_enabled = true
  multi_az                            = true
  db_subnet_group_name                = aws_db_subnet_group.ddb2os[0].name
  vpc_security_group_ids              = [aws_security_group.postgres[0].id]
  parameter_group_name                = aws_db_parameter_group.ddb2os[0].name
  publicly_accessible                 = false
  backup_retention_period             = 7
  copy_tags_to_snapshot               = true
  deletion_protection                 = true
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${local.name}-postgres-final"
  auto_minor_version_upgrade          = true
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = local.kms_key_arn
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring[0].arn
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
}

resource "aws_rds_cluster_parameter_group" "ddb2os" {
  count  = local.pg_aurora ? 1 : 0
  name   = "${local.name}-postgres"
  family = "aurora-postgresql${split(".", var.postgres_version)[0]}"
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  dynamic "parameter" {
    for_each = local.pg_parameters
    content {
      name  = parameter.key
      value = parameter.value
    }
  }
}

resource "aws_rds_cluster" "ddb2os" {
  # checkov:skip=CKV2_AWS_8: automated backups (7 days, point in time) cover the lease and DLQ tables; add the cluster to an AWS Backup plan if your organisation requires one
  # checkov:skip=CKV2_AWS_27: statements slower than 1 s are logged (log_min_duration_statement); logging every lease renewal would bury them
  count                               = local.pg_aurora ? 1 : 0
  cluster_identifier                  = "${local.name}-postgres"
  engine                              = "aurora-postgresql"
  engine_version                      = var.postgres_version
  database_name                       = "ddb2os"
  master_username                     = "ddb2os_admin"
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = local.kms_key_arn
  iam_database_authentication_enabled = true
  storage_encrypted                   = true
  kms_key_id                          = local.kms_key_arn
  db_subnet_group_name                = aws_db_subnet_group.ddb2os[0].name
  vpc_security_group_ids              = [aws_security_group.postgres[0].id]
  db_cluster_parameter_group_name     = aws_rds_cluster_parameter_group.ddb2os[0].name
  backup_retention_period             = 7
  copy_tags_to_snapshot               = true
  deletion_protection                 = true
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${local.name}-postgres-final"
  enabled_cloudwatch_logs_exports     = ["postgresql"]
}

resource "aws_rds_cluster_instance" "ddb2os" {
  count                           = local.pg_aurora ? 2 : 0
  identifier                      = "${local.name}-postgres-${count.index}"
  cluster_identifier              = aws_rds_cluster.ddb2os[0].id
  engine                          = aws_rds_cluster.ddb2os[0].engine
  engine_version                  = aws_rds_cluster.ddb2os[0].engine_version
  instance_class                  = var.postgres_instance_class
  db_subnet_group_name            = aws_db_subnet_group.ddb2os[0].name
  publicly_accessible             = false
  auto_minor_version_upgrade      = true
  performance_insights_enabled    = true
  performance_insights_kms_key_id = local.kms_key_arn
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.rds_monitoring[0].arn
}

# The RDS-managed secret rotates on this schedule (RDS owns the rotation function).
resource "aws_secretsmanager_secret_rotation" "postgres" {
  count     = var.create_postgres ? 1 : 0
  secret_id = local.pg_secret_arn
  rotation_rules {
    automatically_after_days = var.postgres_rotation_days
  }
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count              = var.create_postgres ? 1 : 0
  name               = "${local.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count      = var.create_postgres ? 1 : 0
  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}
