"""Serving: a published model behind KServe's ModelServer.

validation        request → float32 rows, or an InvalidInput (400) that names the problem
batching          concurrent requests merged into one forward pass; slow passes off the event loop
predictor         the kserve.Model (predictor and explainer roles)
explainer_loader  the model's fitted explainer, rebuilt from its directory
guard             415/413 before any JSON is parsed
http_errors       the one handler that turns an MlplatError into its HTTP status and {"error": message}
server            build_app: a fresh app per model directory; serve: that app on loopback, with monitoring and metrics
"""
