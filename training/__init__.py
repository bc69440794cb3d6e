"""Training-side stages: the teacher (data generation) and the student (distillation)."""
