# The books table and its change stream. With change_source = "kinesis" every item change goes to
# Kinesis as one record in the streaming-destination format, with microsecond
# ApproximateCreationDateTime so ddb2os's external versions rarely tie. With "dynamodb-streams"
# ddb2os reads the table's own stream (NEW_AND_OLD_IMAGES) and no Kinesis stream exists.

locals {
  name    = "ddb2os-${var.environment}"
  kinesis = var.change_source == "kinesis"
  # what DDB2OS_STREAM_NAME names, and what the task role may read
  change_stream_name = local.kinesis ? aws_kinesis_stream.changes[0].name : aws_dynamodb_table.books.stream_arn
  change_stream_arn  = local.kinesis ? aws_kinesis_stream.changes[0].arn : aws_dynamodb_table.books.stream_arn
}

resource "aws_kinesis_stream" "changes" {
  count            = local.kinesis ? 1 : 0
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
  # the table's own stream, only when ddb2os reads it (change_source = "dynamodb-streams")
  stream_enabled   = !local.kinesis
  stream_view_type = local.kinesis ? null : "NEW_AND_OLD_IMAGES"

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
  count                                    = local.kinesis ? 1 : 0
  table_name                               = aws_dynamodb_table.books.name
  stream_arn                               = aws_kinesis_stream.changes[0].arn
  approximate_creation_date_time_precision = "MICROSECOND"
}
