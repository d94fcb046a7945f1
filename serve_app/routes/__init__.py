"""The HTTP and WebSocket routes, one module per family, each a class the `Ingress` deployment
(serve_app/ingress.py) inherits: Serve turns the route methods of every class in its MRO into
class-based views. A route method is thin: it hands the request to its handler module
(serve_app/*_api.py) with the replica's Services. A new family is a module here and one base
more on `Ingress`."""
