"""Kubernetes manifest generators: Katib experiments, KServe InferenceServices and Kubeflow TrainJobs."""
