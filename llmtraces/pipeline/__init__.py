"""The read -> check -> write pipeline: recognise a native file, stream it through its reader
and the checks, write any format; used by convert, validate and the transforms.
"""
