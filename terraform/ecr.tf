# Where scripts/image's OCI archive is pushed (README.md: skopeo copy oci-archive:... docker://...).
resource "aws_ecr_repository" "ddb2os" {
  name = local.name
  # A tag names one build of one commit (scripts/image: <commit>-<inputs hash>); never re-pointed.
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = local.kms_key_arn
  }
}

resource "aws_ecr_lifecycle_policy" "ddb2os" {
  repository = aws_ecr_repository.ddb2os.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "drop untagged images after a week"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 7
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "keep the 30 newest builds (room to roll back)"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = 30
        }
        action = { type = "expire" }
      },
    ]
  })
}
