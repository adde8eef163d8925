"""What every verb's command line shares: the one-line error parser, hidden old spellings, S3 target options."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any, NoReturn

from .. import __version__
from ..errors import EXIT_CODES

# boxpack VERB ...: the module of boxpack/cli that runs each, and its function (boxpack SOURCE... is pack:run).
VERBS = {"publish": "publish:run", "mirror": "mirror:run", "catalog": "catalog:run", "inspect": "examine:inspect",
         "verify": "examine:verify", "test": "test:run", "serve": "serve:run"}
# SOURCE completes to a verb or a file: the verbs have parsers of their own.
COMPLETION_PREAMBLE = {
    "bash": f'_boxpack_source() {{ compgen -W "{" ".join(VERBS)}" -- "$1"; compgen -f -- "$1"; }}\n',
    "zsh": f"_boxpack_source() {{ _alternative 'commands:subcommand:({' '.join(VERBS)})' 'files:file:_files' }}\n",
}


class PrintCompletion(argparse.Action):
    """shtab writes the script from the parser itself, so it never falls behind the options."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, shell: object, option: object = None) -> None:
        import shtab

        print(shtab.complete(parser, str(shell), preamble=COMPLETION_PREAMBLE))  # type: ignore[arg-type]  # shtab takes {shell: text} too
        parser.exit(0)


class PrintMan(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object, option: object = None) -> None:
        from argparse_manpage.manpage import Manpage

        page = Manpage(parser)
        page.description = "turn a disk image into Vagrant boxes for every provider"  # NAME, for whatis and apropos
        page.source, page.manual = f"boxpack {__version__}", "boxpack manual"
        print(str(page))
        parser.exit(0)


# The one exit-status table, at the end of every verb's --help (the README has the same).
EXIT_STATUS = "exit status:\n" + "".join(
    textwrap.fill(text, 79, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7) + "\n" for code, text in EXIT_CODES
)


class Parser(argparse.ArgumentParser):
    """Every verb's parser: errors in one line, and the exit-status table after the epilog."""

    def __init__(self, *, description: str | None = None, epilog: str = "", **kw: Any) -> None:
        if description:  # the raw formatter keeps the tables' layout, so long lines are wrapped here
            description = "\n".join(textwrap.fill(line, 79) for line in description.split("\n"))
        super().__init__(description=description, epilog=(epilog.rstrip("\n") + "\n\n" if epilog else "") + EXIT_STATUS,
                         **{"formatter_class": argparse.RawDescriptionHelpFormatter, **kw})

    def error(self, message: str) -> NoReturn:  # one line, not usage + error
        self.exit(2, f"boxpack: error: {message} (see boxpack --help)\n")


def option(p: argparse._ActionsContainer, flag: str, old: str, **kw: Any) -> None:
    """An option, and its older spelling, which still parses but --help, the man page and the
    completions no longer show (one name per option there)."""
    action = p.add_argument(flag, **kw)
    p.add_argument(old, **{**kw, "dest": action.dest, "help": argparse.SUPPRESS})


def target_options(p: argparse._ActionsContainer, dry_run: str) -> None:
    """--endpoint-url and --dry-run, with what a dry run of this verb shows."""
    p.add_argument("--endpoint-url", metavar="URL",
                   help="an S3-compatible endpoint (default: AWS_ENDPOINT_URL, the AWS profile's, or AWS)")
    p.add_argument("--dry-run", action="store_true", help=dry_run)
