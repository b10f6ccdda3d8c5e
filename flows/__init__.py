"""Prefect flows: orchestration only. The logic they call lives in drift/ and training/."""
