# One customer-managed key for what ddb2os's deployment stores: log groups, the alarm topic, ECR,
# the database and its secret, the table and the OpenSearch domain. Bring your own with kms_key_arn.

data "aws_partition" "current" {}

resource "aws_kms_key" "ddb2os" {
  count                   = var.kms_key_arn == "" ? 1 : 0
  description             = "${local.name}: logs, alarms, images, database, secret, table, search"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms[0].json
}

resource "aws_kms_alias" "ddb2os" {
  count         = var.kms_key_arn == "" ? 1 : 0
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.ddb2os[0].key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_111: a key policy's resource is always "*" (the key itself); access is constrained by the principals
  # checkov:skip=CKV_AWS_356: a key policy's resource is always "*" (the key itself); access is constrained by the principals
  # checkov:skip=CKV_AWS_109: the account root must administer the key, or nobody can (AWS's default key policy)
  count = var.kms_key_arn == "" ? 1 : 0
  # The account administers the key through IAM (services that use it, RDS, DynamoDB, ECR, Secrets
  # Manager, OpenSearch, do so with grants made for the caller).
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "LogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:*"]
    }
  }
  # CloudWatch alarms publish to the encrypted alarm topic.
  statement {
    sid       = "AlarmsPublish"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }
}

locals {
  kms_key_arn = var.kms_key_arn != "" ? var.kms_key_arn : aws_kms_key.ddb2os[0].arn
}
