# An optional domain; most users point ddb2os at the domain they already have.
#
# Access: the domain policy lets the ddb2os task role (and the FGAC master user) send signed
# requests; fine-grained access control then decides per index: the master user maps the task
# role to a role that may write the index (README.md). Nodes in two zones with replicas, logs to
# CloudWatch, HTTPS only, encrypted with the CMK.

resource "aws_security_group" "opensearch" {
  count       = var.create_opensearch_domain ? 1 : 0
  name        = "${local.name}-opensearch"
  description = "HTTPS from the ddb2os tasks"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "opensearch_from_tasks" {
  count                        = var.create_opensearch_domain ? 1 : 0
  security_group_id            = aws_security_group.opensearch[0].id
  description                  = "HTTPS from the ddb2os tasks"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = local.task_security_groups[0]
}

locals {
  opensearch_log_types = var.create_opensearch_domain ? toset(["ES_APPLICATION_LOGS", "INDEX_SLOW_LOGS", "SEARCH_SLOW_LOGS", "AUDIT_LOGS"]) : toset([])
  opensearch_zones     = length(var.subnet_ids) > 1 ? 2 : 1
}

resource "aws_cloudwatch_log_group" "opensearch" {
  for_each          = local.opensearch_log_types
  name              = "/aws/opensearch/${local.name}-search/${lower(each.value)}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
}

data "aws_iam_policy_document" "opensearch_logs" {
  count = var.create_opensearch_domain ? 1 : 0
  statement {
    actions   = ["logs:PutLogEvents", "logs:CreateLogStream"]
    resources = [for g in aws_cloudwatch_log_group.opensearch : "${g.arn}:*"]
    principals {
      type        = "Service"
      identifiers = ["es.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_cloudwatch_log_resource_policy" "opensearch" {
  count           = var.create_opensearch_domain ? 1 : 0
  policy_name     = "${local.name}-opensearch-logs"
  policy_document = data.aws_iam_policy_document.opensearch_logs[0].json
}

data "aws_iam_policy_document" "opensearch_access" {
  count = var.create_opensearch_domain ? 1 : 0
  statement {
    actions   = ["es:ESHttp*"]
    resources = ["arn:${data.aws_partition.current.partition}:es:${var.region}:${data.aws_caller_identity.current.account_id}:domain/${local.name}-search/*"]
    principals {
      type        = "AWS"
      identifiers = compact([aws_iam_role.task.arn, var.opensearch_master_user_arn])
    }
  }
}

resource "aws_opensearch_domain" "search" {
  count          = var.create_opensearch_domain ? 1 : 0
  domain_name    = "${local.name}-search"
  engine_version = "OpenSearch_2.19"

  # checkov:skip=CKV2_AWS_59: two data nodes without dedicated masters suit the small domain this creates; set dedicated_master_* for production clusters with more nodes
  cluster_config {
    instance_type          = "t3.medium.search"
    instance_count         = 2
    zone_awareness_enabled = local.opensearch_zones > 1
    dynamic "zone_awareness_config" {
      for_each = local.opensearch_zones > 1 ? [1] : []
      content {
        availability_zone_count = local.opensearch_zones
      }
    }
  }

  ebs_options {
    ebs_enabled = true
    volume_size = 20
    volume_type = "gp3"
  }

  vpc_options {
    subnet_ids         = slice(var.subnet_ids, 0, local.opensearch_zones)
    security_group_ids = [aws_security_group.opensearch[0].id]
  }

  encrypt_at_rest {
    enabled    = true
    kms_key_id = local.kms_key_arn
  }

  node_to_node_encryption {
    enabled = true
  }

  domain_endpoint_options {
    enforce_https       = true
    tls_security_policy = "Policy-Min-TLS-1-2-PFS-2023-10"
  }

  advanced_security_options {
    enabled                        = true
    anonymous_auth_enabled         = false
    internal_user_database_enabled = false
    master_user_options {
      master_user_arn = var.opensearch_master_user_arn
    }
  }

  access_policies = data.aws_iam_policy_document.opensearch_access[0].json

  dynamic "log_publishing_options" {
    for_each = aws_cloudwatch_log_group.opensearch
    content {
      log_type                 = log_publishing_options.key
      cloudwatch_log_group_arn = log_publishing_options.value.arn
    }
  }

  lifecycle {
    precondition {
      condition     = var.opensearch_master_user_arn != ""
      error_message = "create_opensearch_domain needs opensearch_master_user_arn (the fine-grained access control master user)."
    }
  }

  depends_on = [aws_cloudwatch_log_resource_policy.opensearch]
}

locals {
  opensearch_arn      = var.create_opensearch_domain ? aws_opensearch_domain.search[0].arn : var.opensearch_domain_arn
  opensearch_endpoint = var.create_opensearch_domain ? "https://${aws_opensearch_domain.search[0].endpoint}" : var.opensearch_endpoint
}
