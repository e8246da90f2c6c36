"""Serving: a published model behind KServe's ModelServer.

validation  request → float32 rows, or a 4xx that names the problem
batching    concurrent requests merged into one forward pass; slow passes off the event loop
predictor   the kserve.Model (predictor and explainer roles)
guard       415/413 before any JSON is parsed
server      ModelServer bound to loopback, monitoring and metrics attached
"""
