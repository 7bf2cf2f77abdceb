output "books_table" {
  description = "DynamoDB table name."
  value       = aws_dynamodb_table.books.name
}

output "stream_name" {
  description = "The stream that carries the table's changes (DDB2OS_STREAM_NAME): the Kinesis stream's name, or the DynamoDB stream's ARN."
  value       = local.change_stream_name
}

output "api_url" {
  description = "Base URL of the books API (send the key in x-api-key)."
  value       = aws_api_gateway_stage.books.invoke_url
}

output "api_key" {
  description = "API key for the books API."
  value       = aws_api_gateway_api_key.books.value
  sensitive   = true
}

output "opensearch_endpoint" {
  description = "OpenSearch endpoint ddb2os writes to."
  value       = local.opensearch_endpoint
}

output "ecs_cluster" {
  description = "ECS cluster running ddb2os."
  value       = aws_ecs_cluster.ddb2os.name
}

output "ecr_repository_url" {
  description = "Where to push the image (README.md: skopeo copy oci-archive:... docker://URL:TAG)."
  value       = aws_ecr_repository.ddb2os.repository_url
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}

output "postgres_endpoint" {
  description = "Host of the created database (empty with create_postgres = false)."
  value       = local.pg_host
}

output "postgres_secret_arn" {
  description = "The RDS-managed secret of the created database (username, password; rotated)."
  value       = local.pg_secret_arn
}

output "task_role_arn" {
  description = "The tasks' IAM role: map it to an OpenSearch role that may write the index (README.md)."
  value       = aws_iam_role.task.arn
}

output "kms_key_arn" {
  description = "The customer-managed key in use."
  value       = local.kms_key_arn
}
