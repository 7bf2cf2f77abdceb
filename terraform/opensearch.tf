# An optional small domain; most users point ddb2os at the domain they already have.

resource "aws_security_group" "opensearch" {
  count       = var.create_opensearch_domain ? 1 : 0
  name        = "${local.name}-opensearch"
  description = "HTTPS from the ddb2os tasks"
  vpc_id      = var.vpc_id

  ingress {
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    security_groups = local.task_security_groups
  }
}

resource "aws_opensearch_domain" "search" {
  count          = var.create_opensearch_domain ? 1 : 0
  domain_name    = "${local.name}-search"
  engine_version = "OpenSearch_2.19"

  cluster_config {
    instance_type          = "t3.medium.search"
    instance_count         = 2
    zone_awareness_enabled = length(var.subnet_ids) > 1
  }

  ebs_options {
    ebs_enabled = true
    volume_size = 20
    volume_type = "gp3"
  }

  vpc_options {
    subnet_ids         = length(var.subnet_ids) > 1 ? slice(var.subnet_ids, 0, 2) : var.subnet_ids
    security_group_ids = [aws_security_group.opensearch[0].id]
  }

  encrypt_at_rest {
    enabled = true
  }

  node_to_node_encryption {
    enabled = true
  }

  domain_endpoint_options {
    enforce_https       = true
    tls_security_policy = "Policy-Min-TLS-1-2-2019-07"
  }
}

locals {
  opensearch_arn      = var.create_opensearch_domain ? aws_opensearch_domain.search[0].arn : var.opensearch_domain_arn
  opensearch_endpoint = var.create_opensearch_domain ? "https://${aws_opensearch_domain.search[0].endpoint}" : var.opensearch_endpoint
}
