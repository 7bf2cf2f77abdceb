# Tasks follow the stream's iterator age: one more task while the oldest unread record is older
# than scale_out_iterator_age_ms for 3 minutes, one fewer after 15 minutes below a tenth of it;
# never more than max_tasks (set near the shard count: workers beyond the shards only wait for
# leases). A scale-in is safe: the task drains on SIGTERM and its leases move within a second.
# With change_source = "dynamodb-streams" there is no iterator age metric: the service keeps
# min_tasks (a DynamoDB stream allows two readers per shard at once; leases keep it to one).

resource "aws_appautoscaling_target" "ddb2os" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.ddb2os.name}/${aws_ecs_service.ddb2os.name}"
  min_capacity       = var.min_tasks
  max_capacity       = max(var.min_tasks, var.max_tasks)
}

locals {
  scaling = {
    out = { step = 1, cooldown = 300, period = 60, operator = "GreaterThanThreshold", threshold = var.scale_out_iterator_age_ms,
    description = "ddb2os falls behind the stream: add a task (up to max_tasks)." }
    in = { step = -1, cooldown = 600, period = 300, operator = "LessThanThreshold", threshold = var.scale_out_iterator_age_ms / 10,
    description = "ddb2os keeps up with the stream: remove a task (down to min_tasks)." }
  }
}

resource "aws_appautoscaling_policy" "iterator_age" {
  for_each           = local.kinesis ? local.scaling : {}
  name               = "${local.name}-iterator-age-${each.key}"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.ddb2os.service_namespace
  scalable_dimension = aws_appautoscaling_target.ddb2os.scalable_dimension
  resource_id        = aws_appautoscaling_target.ddb2os.resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = each.value.cooldown
    metric_aggregation_type = "Maximum"
    step_adjustment {
      # relative to the alarm's threshold: above it for "out", below it for "in"
      metric_interval_lower_bound = each.value.step > 0 ? 0 : null
      metric_interval_upper_bound = each.value.step < 0 ? 0 : null
      scaling_adjustment          = each.value.step
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "iterator_age_scaling" {
  for_each            = local.kinesis ? local.scaling : {}
  alarm_name          = "${local.name}-scale-${each.key}-iterator-age"
  alarm_description   = each.value.description
  namespace           = "AWS/Kinesis"
  metric_name         = "GetRecords.IteratorAgeMilliseconds"
  dimensions          = local.stream_dimensions
  statistic           = "Maximum"
  period              = each.value.period
  evaluation_periods  = 3
  threshold           = each.value.threshold
  comparison_operator = each.value.operator
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.iterator_age[each.key].arn]
}
