"""Serverless entry points (AWS Lambda, IBM Code Engine job) over one environment contract."""
