"""Model calls that are not urgent (issue 19.4): the OpenAI Batch API when the deployment says
so (batch.py), else the synchronous service paced by the provider's rate-limit headers
(ratelimit.py)."""
