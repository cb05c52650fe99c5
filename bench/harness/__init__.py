"""Harnesses that run Myelin and a reference Synapse for the benchmarks in bench/.

Import from a script in bench/ after putting bench/ on sys.path:
    from harness import common, myelin, synapse
"""
