# What the tasks may reach, and nothing else: HTTPS inside the VPC (the OpenSearch domain and the
# interface endpoints below), PostgreSQL on 5432, and S3 through its gateway endpoint (ECR's image
# layers). Without the endpoints (create_vpc_endpoints = false) the subnets need a NAT gateway and
# the tasks HTTPS to anywhere; README.md says which.

data "aws_vpc" "selected" {
  id = var.vpc_id
}

resource "aws_security_group" "tasks" {
  # checkov:skip=CKV2_AWS_5: attached to the ECS service through local.task_security_groups (ecs.tf), which checkov does not follow
  count       = length(var.security_group_ids) == 0 ? 1 : 0
  name        = "${local.name}-tasks"
  description = "ddb2os tasks: no ingress; egress to HTTPS, PostgreSQL and S3 only"
  vpc_id      = var.vpc_id
}

locals {
  task_security_groups = length(var.security_group_ids) > 0 ? var.security_group_ids : [aws_security_group.tasks[0].id]
  own_task_sg          = length(var.security_group_ids) == 0
}

resource "aws_vpc_security_group_egress_rule" "tasks_https_vpc" {
  count             = local.own_task_sg && var.create_vpc_endpoints ? 1 : 0
  security_group_id = aws_security_group.tasks[0].id
  description       = "HTTPS to the VPC: OpenSearch and the interface endpoints"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = data.aws_vpc.selected.cidr_block
}

resource "aws_vpc_security_group_egress_rule" "tasks_https_any" {
  count             = local.own_task_sg && !var.create_vpc_endpoints ? 1 : 0
  security_group_id = aws_security_group.tasks[0].id
  description       = "HTTPS to the AWS APIs through the NAT gateway (no VPC endpoints)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "tasks_s3" {
  count             = local.own_task_sg && var.create_vpc_endpoints && length(var.route_table_ids) > 0 ? 1 : 0
  security_group_id = aws_security_group.tasks[0].id
  description       = "HTTPS to S3 through the gateway endpoint (ECR image layers)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3[0].prefix_list_id
}

resource "aws_vpc_security_group_egress_rule" "tasks_pg_created" {
  count                        = local.own_task_sg && var.create_postgres ? 1 : 0
  security_group_id            = aws_security_group.tasks[0].id
  description                  = "PostgreSQL: leases, checkpoints, DLQ"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.postgres[0].id
}

resource "aws_vpc_security_group_egress_rule" "tasks_pg_existing" {
  count                        = local.own_task_sg && !var.create_postgres ? 1 : 0
  security_group_id            = aws_security_group.tasks[0].id
  description                  = "PostgreSQL: leases, checkpoints, DLQ"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = var.pg_security_group_id != "" ? var.pg_security_group_id : null
  cidr_ipv4                    = var.pg_security_group_id == "" ? data.aws_vpc.selected.cidr_block : null
}

resource "aws_vpc_security_group_ingress_rule" "existing_pg_from_tasks" {
  count                        = !var.create_postgres && var.pg_security_group_id != "" ? 1 : 0
  security_group_id            = var.pg_security_group_id
  description                  = "PostgreSQL from the ddb2os tasks"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = local.task_security_groups[0]
}

# Interface endpoints: Kinesis (GetRecords; a DynamoDB stream is read through the NAT route),
# Secrets Manager (the database secret at task start),
# ECR (image manifests), CloudWatch Logs (awslogs and EMF).
locals {
  interface_endpoints = var.create_vpc_endpoints ? setunion(local.kinesis ? ["kinesis-streams"] : [], ["secretsmanager", "ecr.api", "ecr.dkr", "logs"]) : toset([])
}

resource "aws_security_group" "endpoints" {
  count       = var.create_vpc_endpoints ? 1 : 0
  name        = "${local.name}-endpoints"
  description = "VPC interface endpoints: HTTPS from the ddb2os tasks"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_tasks" {
  count                        = var.create_vpc_endpoints ? 1 : 0
  security_group_id            = aws_security_group.endpoints[0].id
  description                  = "HTTPS from the ddb2os tasks"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = local.task_security_groups[0]
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = local.interface_endpoints
  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${var.region}.${each.value}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true
}

resource "aws_vpc_endpoint" "s3" {
  count             = var.create_vpc_endpoints && length(var.route_table_ids) > 0 ? 1 : 0
  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.route_table_ids
}
