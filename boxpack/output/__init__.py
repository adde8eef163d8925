"""The output stage: a provider's members become a box.

tar.py lays the members out as a deterministic tar; gzip.py compresses it on every core and computes
the digest as it is written; write.py sends the box to a file (files.py places it whole), a stream or
a directory.
"""
