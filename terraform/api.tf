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

resource "aws_api_gateway_stage" "books" {
  rest_api_id   = aws_api_gateway_rest_api.books.id
  deployment_id = aws_api_gateway_deployment.books.id
  stage_name    = var.environment
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
