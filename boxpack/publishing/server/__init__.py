"""boxpack serve: an HTTP server in front of a store that boxpack publish and mirror write, for Vagrant and for
people: catalogs and boxes by name with private boxes behind tokens, pages a browser can read, the Vagrant Cloud
publish API, and as many replicas as needed, all their state in the store.

app.py assembles the ASGI application (Starlette) and maps every refusal to its answer; context.py is what every
part shares (configuration, what was read from the store, who may read or write what); catalogs.py answers
Vagrant; api.py the publish API (over ../boxes.py); pages.py renders the pages (Jinja2); limits.py counts invalid
tokens across worker processes; protocol.py bounds what a request's head may take; run.py starts it all under
uvicorn with several worker processes. Only this package imports Starlette.
"""
