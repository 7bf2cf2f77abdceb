# The alarms an operator of ddb2os needs, all to one SNS topic (alarm_email, or subscribe your
# own endpoint to the alarm_topic_arn output). docs/operations.md says what to do for each.

resource "aws_sns_topic" "alarms" {
  name              = "${local.name}-alarms"
  kms_master_key_id = local.kms_key_arn
}

resource "aws_sns_topic_subscription" "alarms_email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  opensearch_domain_name = var.create_opensearch_domain ? aws_opensearch_domain.search[0].domain_name : var.opensearch_domain_name
  os_dimensions          = tomap({ DomainName = local.opensearch_domain_name, ClientId = data.aws_caller_identity.current.account_id })
  stream_dimensions      = tomap({ StreamName = local.kinesis ? aws_kinesis_stream.changes[0].name : "" })
  table_dimensions       = tomap({ TableName = aws_dynamodb_table.books.name })
  api_dimensions         = tomap({ ApiName = aws_api_gateway_rest_api.books.name, Stage = aws_api_gateway_stage.books.stage_name })

  # name => what, where, how; the opensearch-* ones only when the domain is known
  alarm_definitions = {
    iterator-age = {
      description = "ddb2os is more than alarm_iterator_age_ms behind the stream (tasks down, PostgreSQL or OpenSearch trouble, or too few tasks)."
      namespace   = "AWS/Kinesis", metric = "GetRecords.IteratorAgeMilliseconds", dimensions = local.stream_dimensions
      statistic   = "Maximum", period = 60, periods = 5, threshold = var.alarm_iterator_age_ms, operator = "GreaterThanThreshold"
    }
    read-throttled = {
      description = "GetRecords calls are throttled (more readers than the shards allow: check max_tasks and other consumers)."
      namespace   = "AWS/Kinesis", metric = "ReadProvisionedThroughputExceeded", dimensions = local.stream_dimensions
      statistic   = "Sum", period = 300, periods = 3, threshold = 0, operator = "GreaterThanThreshold"
    }
    ddb-put-throttled = {
      description = "DynamoDB could not put change records into the stream (ThrottledPutRecordCount): changes are delayed."
      namespace   = "AWS/DynamoDB", metric = "ThrottledPutRecordCount", dimensions = local.table_dimensions
      statistic   = "Sum", period = 300, periods = 2, threshold = 0, operator = "GreaterThanThreshold"
    }
    ddb-unreplicated-age = {
      description = "The oldest change not yet in the Kinesis stream is older than 5 minutes (AgeOfOldestUnreplicatedRecord)."
      namespace   = "AWS/DynamoDB", metric = "AgeOfOldestUnreplicatedRecord", dimensions = local.table_dimensions
      statistic   = "Maximum", period = 60, periods = 5, threshold = 300000, operator = "GreaterThanThreshold"
    }
    api-5xx = {
      description = "The books API answers 5XX (DynamoDB errors other than a failed condition, throttling or validation)."
      namespace   = "AWS/ApiGateway", metric = "5XXError", dimensions = local.api_dimensions
      statistic   = "Sum", period = 300, periods = 1, threshold = 5, operator = "GreaterThanThreshold"
    }
    opensearch-red = {
      description = "The OpenSearch cluster is red: a primary shard is unassigned, writes to it fail and go to the DLQ after retries."
      namespace   = "AWS/ES", metric = "ClusterStatus.red", dimensions = local.os_dimensions
      statistic   = "Maximum", period = 60, periods = 1, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
    opensearch-write-blocked = {
      description = "OpenSearch blocks writes (ClusterIndexWritesBlocked: disk or memory pressure); ddb2os retries and falls behind."
      namespace   = "AWS/ES", metric = "ClusterIndexWritesBlocked", dimensions = local.os_dimensions
      statistic   = "Maximum", period = 300, periods = 1, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
    opensearch-free-storage = {
      description = "A data node has less than opensearch_free_storage_mb free; writes will be blocked at the flood stage."
      namespace   = "AWS/ES", metric = "FreeStorageSpace", dimensions = local.os_dimensions
      statistic   = "Minimum", period = 300, periods = 1, threshold = var.opensearch_free_storage_mb, operator = "LessThanThreshold"
    }
  }
  # The Kinesis and Kinesis-destination alarms only with change_source = "kinesis" (a DynamoDB
  # stream has no iterator age metric: the replication-latency alarm below covers falling behind).
  kinesis_alarms = ["iterator-age", "read-throttled", "ddb-put-throttled", "ddb-unreplicated-age"]
  simple_alarms  = { for k, v in local.alarm_definitions : k => v if(var.create_opensearch_domain || var.opensearch_domain_name != "" || !startswith(k, "opensearch-")) && (local.kinesis || !contains(local.kinesis_alarms, k)) }
}

resource "aws_cloudwatch_metric_alarm" "simple" {
  for_each            = local.simple_alarms
  alarm_name          = "${local.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  period              = each.value.period
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = each.value.operator
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# Fewer tasks running than desired for 5 minutes (crash loop, image pull or secret failure).
resource "aws_cloudwatch_metric_alarm" "tasks_missing" {
  alarm_name          = "${local.name}-tasks-below-desired"
  alarm_description   = "Fewer ddb2os tasks are running than desired (ECS Container Insights): look at the stopped tasks' reasons."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 5
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "missing"
    expression  = "desired - running"
    label       = "tasks missing"
    return_data = true
  }
  metric_query {
    id = "desired"
    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "DesiredTaskCount"
      dimensions  = { ClusterName = aws_ecs_cluster.ddb2os.name, ServiceName = aws_ecs_service.ddb2os.name }
      stat        = "Average"
      period      = 60
    }
  }
  metric_query {
    id = "running"
    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "RunningTaskCount"
      dimensions  = { ClusterName = aws_ecs_cluster.ddb2os.name, ServiceName = aws_ecs_service.ddb2os.name }
      stat        = "Average"
      period      = 60
    }
  }
}

# ddb2os's own EMF metrics (log_emf), read with CloudWatch Metrics Insights over every worker:
# records going to the dead-letter queue (summed), and the p99 of each worker's minute from a
# change's ApproximateCreationDateTime to OpenSearch's answer (the worst worker).
locals {
  emf_alarms = {
    dlq-growth = {
      description = "Records went to ddb2os's dead-letter queue: 'ddb2os dlq list' shows why; replay after the fix."
      query       = "SELECT SUM(DeadLettered) FROM SCHEMA(ddb2os, Worker)", label = "records dead-lettered"
      period      = 300, periods = 1, threshold = 0
    }
    replication-latency = {
      description = "Changes reach OpenSearch more than alarm_replication_latency_ms after they were made (p99 of a worker's minute): look at the lag, bulk latency and retries (docs/operations.md)."
      query       = "SELECT MAX(ReplicationLatencyP99) FROM SCHEMA(ddb2os, Worker)", label = "change to index, p99 (ms)"
      period      = 60, periods = 5, threshold = var.alarm_replication_latency_ms
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "emf" {
  for_each            = local.emf_alarms
  alarm_name          = "${local.name}-${each.key}"
  alarm_description   = each.value.description
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  evaluation_periods  = each.value.periods
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "emf"
    expression  = each.value.query
    period      = each.value.period
    label       = each.value.label
    return_data = true
  }
}

# The DLQ alarm was a resource of its own before the latency alarm joined it.
moved {
  from = aws_cloudwatch_metric_alarm.dlq_growth
  to   = aws_cloudwatch_metric_alarm.emf["dlq-growth"]
}
