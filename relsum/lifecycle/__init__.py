"""Model lifecycle: MLflow tracking, the model registry, the promotion and summary gates."""
