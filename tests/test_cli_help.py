"""`racer --help` and every command's: each option says what it is for, and the version is one flag away."""
import argparse
import subprocess
import sys
from importlib.metadata import version

from racer.cli import build_parser

RACER = [sys.executable, "-m", "racer.cli"]


def arguments(parser: argparse.ArgumentParser, command: str = "racer"):
    """(command, argument) for every argument of every command and subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from arguments(sub, f"{command} {name}")
        else:
            yield command, action


def test_every_argument_of_every_command_has_help_text():
    listed = list(arguments(build_parser()))
    assert len(listed) > 150
    missing = [f"{command} {action.option_strings or action.dest}" for command, action in listed
               if action.help is None and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))]
    assert missing == []


def test_version():
    proc = subprocess.run([*RACER, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == f"racer {version('racer')}\n"


def test_calibrate_help_shows_both_calibrations_and_neither_is_required():
    proc = subprocess.run([*RACER, "calibrate", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    usage = proc.stdout.split("\n\n")[0]
    assert usage == ("usage: racer calibrate --car HOST [--password-stdin] [--fingerprint SHA256]\n"
                     "       racer calibrate camera --images DIR --out FILE [options]")
    text = " ".join(proc.stdout.split())  # as read, whatever the terminal's width
    assert "TARGET" not in text
    assert "steering and throttle wizard" in text and "full left and full right" in text


def test_train_help_names_both_algorithms():
    proc = subprocess.run([*RACER, "train", "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(proc.stdout.split())
    assert "dagger (default): imitation of the privileged" in text and "ppo: reinforcement learning" in text
