"""The command line's commands, one module each: `add_parser(commands)` adds the command's options
and sets its handler. `playground.cli` builds the parser from them, importing only the module of
the command asked for, so that commands on data start without torch."""
