"""boxpack serve: an HTTP server in front of a store that boxpack publish and mirror write, for Vagrant and for
people: catalogs and boxes by name with private boxes behind tokens, pages a browser can read, and as many
replicas as needed, all their state in the store (access.py). app.py is the ASGI application (Starlette),
pages.py renders the pages (Jinja2), run.py starts it under uvicorn with several worker processes.
"""
