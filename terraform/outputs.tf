output "books_table" {
  description = "DynamoDB table name."
  value       = aws_dynamodb_table.books.name
}

output "stream_name" {
  description = "Kinesis stream that carries the table's changes (DDB2OS_STREAM_NAME)."
  value       = aws_kinesis_stream.changes.name
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
