"""`python -m plugins <name>`: run a plugin from source, as bin/<name> runs it frozen."""
from plugins.multicall import main

main()
