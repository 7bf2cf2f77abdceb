terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.73 brings approximate_creation_date_time_precision on the streaming destination (data.tf).
      version = ">= 5.73, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project = "ddb2os"
      env     = var.environment
    }
  }
}
