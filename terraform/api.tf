# The seed project's books API, with its defects fixed (see books_api.yaml): escaped values,
# validated bodies, 404 for missing items, no upsert on PUT, no 200 for errors, a list route, and
# an API key with a usage plan.

data "aws_iam_policy_document" "apigw_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "books_api" {
  name               = "${local.name}-books-api"
  assume_role_policy = data.aws_iam_policy_document.apigw_assume.json
}

resource "aws_iam_role_policy" "books_api" {
  name = "books-crud"
  role = aws_iam_role.books_api.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan"]
      Resource = aws_dynamodb_table.books.arn
    }]
  })
}

resource "aws_api_gateway_rest_api" "books" {
  name = "${local.name}-books"
  body = templatefile("${path.module}/books_api.yaml", {
    api_name = "${local.name}-books"
    region   = var.region
    table    = aws_dynamodb_table.books.name
    role_arn = aws_iam_role.books_api.arn
  })

  endpoint_configuration {
    types = ["REGIONAL"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_api_gateway_deployment" "books" {
  rest_api_id = aws_api_gateway_rest_api.books.id
  triggers = {
    redeploy = sha1(aws_api_gateway_rest_api.books.body)
  }
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "books_api" {
  name              = "/aws/apigateway/${local.name}-books"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
}

# Execution logs need the account-wide CloudWatch role of API Gateway (once per account and region).
data "aws_iam_policy_document" "apigw_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "apigw_cloudwatch" {
  count              = var.manage_api_gateway_account ? 1 : 0
  name               = "${local.name}-apigw-cloudwatch"
  assume_role_policy = data.aws_iam_policy_document.apigw_logs_assume.json
}

resource "aws_iam_role_policy_attachment" "apigw_cloudwatch" {
  count      = var.manage_api_gateway_account ? 1 : 0
  role       = aws_iam_role.apigw_cloudwatch[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
}

resource "aws_api_gateway_account" "this" {
  count               = var.manage_api_gateway_account ? 1 : 0
  cloudwatch_role_arn = aws_iam_role.apigw_cloudwatch[0].arn
}

resource "aws_api_gateway_stage" "books" {
  # checkov:skip=CKV_AWS_120: no response cache: a CRUD API over the table must not serve stale items
  # checkov:skip=CKV2_AWS_51: callers authenticate with an API key over TLS; mutual TLS needs a custom domain, which this configuration does not create
  # checkov:skip=CKV2_AWS_29: a WAF web ACL is the operator's choice (README.md shows how to associate one); the usage plan throttles every key
  rest_api_id          = aws_api_gateway_rest_api.books.id
  deployment_id        = aws_api_gateway_deployment.books.id
  stage_name           = var.environment
  xray_tracing_enabled = true

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.books_api.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      ip                 = "$context.identity.sourceIp"
      requestTime        = "$context.requestTime"
      httpMethod         = "$context.httpMethod"
      resourcePath       = "$context.resourcePath"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      integrationStatus  = "$context.integration.status"
      integrationLatency = "$context.integration.latency"
      errorMessage       = "$context.error.message"
      apiKeyId           = "$context.identity.apiKeyId"
    })
  }

  depends_on = [aws_api_gateway_account.this]
}

# Every method: CloudWatch metrics, execution logs at INFO without request bodies (book titles are
# the users' data), and a stage-wide throttle under the usage plan's.
resource "aws_api_gateway_method_settings" "books" {
  # checkov:skip=CKV_AWS_225: no response cache: a CRUD API over the table must not serve stale items
  rest_api_id = aws_api_gateway_rest_api.books.id
  stage_name  = aws_api_gateway_stage.books.stage_name
  method_path = "*/*"

  settings {
    metrics_enabled        = true
    logging_level          = "INFO"
    data_trace_enabled     = false
    throttling_rate_limit  = var.api_throttle_rate * 2
    throttling_burst_limit = var.api_throttle_rate * 4
    caching_enabled        = false
  }
}

resource "aws_api_gateway_api_key" "books" {
  name = "${local.name}-books"
}

resource "aws_api_gateway_usage_plan" "books" {
  name = "${local.name}-books"

  api_stages {
    api_id = aws_api_gateway_rest_api.books.id
    stage  = aws_api_gateway_stage.books.stage_name
  }

  throttle_settings {
    rate_limit  = var.api_throttle_rate
    burst_limit = var.api_throttle_rate * 2
  }
}

resource "aws_api_gateway_usage_plan_key" "books" {
  key_id        = aws_api_gateway_api_key.books.id
  key_type      = "API_KEY"
  usage_plan_id = aws_api_gateway_usage_plan.books.id
}
