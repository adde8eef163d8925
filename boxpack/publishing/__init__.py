"""The publishing wing: putting boxes where Vagrant finds them, and keeping their catalogs true.

publish.py writes boxes and their catalog in the order that keeps every catalog true; mirror.py copies
boxes from any catalog through the same Publisher; http.py downloads catalogs and boxes; stores/ moves
bytes to S3-compatible storage or a directory.
"""
