# The books table and its change stream: every item change goes to Kinesis as one record in the
# streaming-destination format, with microsecond ApproximateCreationDateTime so ddb2os's external
# versions rarely tie.

locals {
  name = "ddb2os-${var.environment}"
}

resource "aws_kinesis_stream" "changes" {
  name             = "${local.name}-books-changes"
  retention_period = var.stream_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = "alias/aws/kinesis"

  stream_mode_details {
    stream_mode = "ON_DEMAND"
  }
}

resource "aws_dynamodb_table" "books" {
  name         = "${local.name}-books"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "book_id"

  attribute {
    name = "book_id"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }
}

resource "aws_dynamodb_kinesis_streaming_destination" "books" {
  table_name                               = aws_dynamodb_table.books.name
  stream_arn                               = aws_kinesis_stream.changes.arn
  approximate_creation_date_time_precision = "MICROSECOND"
}
