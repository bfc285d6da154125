"""cli_vocab.py OPTIONS_DEF HELP_DIR: the option lines of the --help texts in HELP_DIR (one file per program)
against the vocabulary of lib/core/options.def and against each other. Prints one line per contradiction (a long
option the vocabulary does not have, a letter paired with another long option than the vocabulary's, a letter or
long option that means two things in two programs) and exits 1 if there is any (used by cli-conventions.sh)."""
import os
import re
import sys

DEF = re.compile(r'^SCP_OPTION\((\w+), "([a-z0-9-]+)", (0|\'.\'), ', re.M)
# The option part of a help line: "  -j, --threads N", "      --lr-attn X, --lr-mlp X, ...", "      --shift, --no-shift".
OPT = re.compile(r'(?:(?<![\w-])-([A-Za-z]), )?--([a-z][a-z0-9-]*)')


def option_part(line):
    """The text before the description: options and their value names, up to the first run of two spaces."""
    body = line.lstrip(' ')
    return re.split(r' {2,}', body, maxsplit=1)[0]


def main(def_path, help_dir):
    vocab = {m.group(2): '' if m.group(3) == '0' else m.group(3)[1] for m in DEF.finditer(open(def_path).read())}
    bad, letter_of, long_of = [], {}, {}
    for prog in sorted(os.listdir(help_dir)):
        for line in open(os.path.join(help_dir, prog)):
            if not re.match(r'^ +-', line):
                continue
            for m in OPT.finditer(option_part(line.rstrip('\n'))):
                letter, name = m.group(1) or '', m.group(2)
                if name not in vocab:
                    bad.append('%s: --%s is not in options.def' % (prog, name))
                elif vocab[name] != letter:
                    bad.append('%s: %s--%s, options.def gives it %s' % (
                        prog, '-%s, ' % letter if letter else '', name, '-' + vocab[name] if vocab[name] else 'no letter'))
                if letter and long_of.setdefault(letter, (name, prog))[0] != name:
                    bad.append('-%s is --%s in %s and --%s in %s' % (letter, long_of[letter][0], long_of[letter][1], name, prog))
                if letter_of.setdefault(name, (letter, prog))[0] != letter:
                    bad.append('--%s has letter "%s" in %s and "%s" in %s' % (
                        name, letter_of[name][0], letter_of[name][1], letter, prog))
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], sys.argv[2]))
