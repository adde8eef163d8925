"""The output stage: a provider's members become a box, and boxes go where they are published.

tar.py lays the members out as a deterministic tar; gzip.py compresses it on every core and computes
the digest as it is written; write.py sends the box to a file (under a temporary name, renamed
when complete), a stream or a directory; tempfiles.py keeps those temporary names safe from
killed runs; targets/ holds the publish targets (S3-compatible storage and a directory).
"""
