"""The example set builders that turn text shipped by Debian packages into BEIR folders (README,
"How the defaults were chosen"): each is built from tiny inputs and read back."""

import gzip
import subprocess
from pathlib import Path

from mimir_mcp.evaluation.beir import load_dataset

from ..conftest import PYTHON

EXAMPLES = Path(__file__).parents[2] / "examples"


def build(script: str, *args: str) -> None:
    made = subprocess.run([PYTHON, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]


def test_man_pages_set(tmp_path):
    """examples/man_pages_set.py: NAME summaries find the DESCRIPTION of their page."""
    man = tmp_path / "man"
    (man / "man1").mkdir(parents=True)
    (man / "man3").mkdir()
    pages = {
        "man1/cp.1.gz": '.\\" generated\n.TH CP "1"\n.SH NAME\ncp \\- copy files and directories\n.SH SYNOPSIS\n'
        ".B cp\nSOURCE DEST\n.SH DESCRIPTION\n.PP\nCopy \\fISOURCE\\fR to \\fBDEST\\fP, or several\n"
        ".TP\n\\fB\\-a\\fR, \\fB\\-\\-archive\\fR\nsame as \\fB\\-dR\\fR\n.TS\nl l.\ntable\trow\n.TE\n"
        ".SH AUTHOR\nWritten by someone.\n",
        # same summary as cp: asks for two pages, so it is no query (the document stays)
        "man1/cp-copy.1": ".TH CPC 1\n.SH NAME\ncpc \\- copy files and directories\n.SH DESCRIPTION\n"
        "A second copier that is much like the first one.\n",
        "man3/printf.3.gz": ".TH PRINTF 3\n.SH NAME\nprintf, fprintf \\- formatted output conversion\n"
        ".SH DESCRIPTION\nThe functions in the\n.BR printf ()\n"
        "family produce output according to a \\(lqformat\\(rq.\n",
        # the summary occurs verbatim in the description: a document, but no query
        "man3/puts.3": ".TH PUTS 3\n.SH NAME\nputs \\- output of strings\n.SH DESCRIPTION\n"
        "These functions perform output of strings to a stream.\n",
        "man3/fprintf.3.gz": ".so man3/printf.3\n",  # an alias
        "man1/bsd.1": ".Dd May 1, 2020\n.Sh NAME\n.Nm bsd\n.Nd an mdoc page\n",
        "man1/short.1": ".TH SHORT 1\n.SH NAME\nshort \\- too short a page\n.SH DESCRIPTION\nSays little.\n",
        "man1/gcloud_x.1": ".TH G 1\n.SH NAME\ngcloud x \\- a generated page\n.SH DESCRIPTION\nOne of many thousand.\n",
    }
    for name, text in pages.items():
        path = man / name
        path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    (man / "man1" / "cp-link.1.gz").symlink_to("cp.1.gz")

    build("man_pages_set.py", "--man", str(man), "--out", str(tmp_path / "set"))
    dataset = load_dataset(tmp_path / "set", "test")
    assert set(dataset.corpus) == {"cp.1", "cp-copy.1", "printf.3", "puts.3"}
    cp = dataset.corpus["cp.1"]
    assert cp.title == "cp (1)"
    assert cp.text == "Copy SOURCE to DEST, or several -a, --archive same as -dR"
    assert dataset.corpus["printf.3"].memory_text == (
        'printf, fprintf (3)\nThe functions in the printf() family produce output according to a "format".'
    )
    assert dataset.queries == {"q-printf.3": "formatted output conversion"}
    assert dataset.qrels == {"q-printf.3": {"printf.3": 1}}


def test_python_reference_set(tmp_path):
    """examples/python_reference_set.py: an object's first sentence finds the rest of its documentation."""
    html = tmp_path / "library"
    html.mkdir()
    (html / "shutil.html").write_text(
        '<html><body><section><h1>shutil<a class="headerlink" href="#">¶</a></h1>\n'
        '<dl class="py function">\n<dt class="sig sig-object py" id="shutil.copyfile">\n'
        '<span class="pre">shutil.</span><span class="pre">copyfile</span>(<em>src</em>, <em>dst</em>)'
        '<a class="headerlink" href="#shutil.copyfile">¶</a></dt>\n'
        "<dd><p>Copy the contents of the file named <em>src</em>\nto a file named <em>dst</em>. "
        "Both are path-like objects.</p>\n<p>The destination must be writable.</p>\n</dd></dl>\n"
        # a class: its method is a document of its own, not part of the class's text
        '<dl class="py class">\n<dt class="sig sig-object py" id="shutil.Archive">class shutil.Archive()</dt>\n'
        "<dd><p>An archive of many files kept together. It is written once, then read.</p>\n"
        '<dl class="field-list"><dt>Raises</dt><dd><p>OSError when the disk is full</p></dd></dl>\n'
        '<dl class="py method">\n<dt class="sig sig-object py" id="shutil.Archive.add">add(<em>path</em>)</dt>\n'
        "<dd><p>Add one more file at the end of the archive. The file is read at once.</p></dd></dl>\n"
        "</dd></dl>\n"
        # one sentence only: left out
        '<dl class="py data">\n<dt class="sig sig-object py" id="shutil.SEP">shutil.SEP</dt>\n'
        "<dd><p>The separator between the parts of a path.</p></dd></dl>\n"
        # the same rest after different first sentences is boilerplate: both left out
        '<dl class="py data">\n<dt class="sig sig-object py" id="shutil.EX_A">shutil.EX_A</dt>\n'
        "<dd><p>Exit code for a missing file.</p><p>Availability: Unix, not Emscripten, not WASI.</p></dd></dl>\n"
        '<dl class="py data">\n<dt class="sig sig-object py" id="shutil.EX_B">shutil.EX_B</dt>\n'
        "<dd><p>Exit code for a full disk.</p><p>Availability: Unix, not Emscripten, not WASI.</p></dd></dl>\n"
        # the first sentence is repeated in the rest: a document, but no query
        '<dl class="py function">\n<dt class="sig sig-object py" id="shutil.move">shutil.move(src, dst)</dt>\n'
        "<dd><p>Move a file to another place. In short: move a file to another place, again.</p></dd></dl>\n"
        "</section></body></html>\n",
        encoding="utf-8",
    )
    build("python_reference_set.py", "--html", str(html), "--out", str(tmp_path / "set"))
    dataset = load_dataset(tmp_path / "set", "test")
    assert set(dataset.corpus) == {"shutil.copyfile", "shutil.Archive", "shutil.Archive.add", "shutil.move"}
    assert dataset.corpus["shutil.copyfile"].memory_text == (
        "shutil.copyfile(src, dst)\nBoth are path-like objects. The destination must be writable."
    )
    assert dataset.corpus["shutil.Archive"].memory_text == (
        "class shutil.Archive()\nIt is written once, then read. Raises OSError when the disk is full"
    )
    assert dataset.corpus["shutil.Archive.add"].title == "shutil.Archive.add(path)"
    assert dataset.queries == {
        "q-shutil.copyfile": "Copy the contents of the file named src to a file named dst.",
        "q-shutil.Archive": "An archive of many files kept together.",
        "q-shutil.Archive.add": "Add one more file at the end of the archive.",
    }
    assert all(dataset.qrels[query] == {query[2:]: 1} for query in dataset.queries)


def _b64(number: int) -> str:
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    text = ""
    while True:
        text = digits[number % 64] + text
        number //= 64
        if not number:
            return text


def test_foldoc_set(tmp_path):
    """examples/foldoc_set.py: an entry's first sentence finds its headword and the rest of the entry."""
    entries = [
        (
            ["Pascal"],
            "Pascal\n\n   <language> (After the mathematician {Blaise\n   Pascal}) A language designed by N. Wirth"
            " around 1970.  It\n   emphasises {structured programming} and data structures and\n"
            "   {strong typing} in teaching.\n\n   (1995-03-10)\n\n",
        ),
        (["PL", "pl"], "pl\n\n   {Pascal}.\n\n"),  # a cross-reference, under two headwords: left out
        (
            ["VLAN"],
            "virtual LAN\n\n   VLAN\n   <networking> (VLAN) A logical grouping of nodes on one network.\n"
            "   A VLAN lets nodes on many segments share one broadcast domain as if wired together.\n\n",
        ),
        (  # the first sentence returns in the rest: a document, but no query
            ["grok"],
            "grok\n\n   <jargon> To understand a thing deeply.  Hackers say: to understand a thing deeply"
            " is to grok it, as in the novel.\n\n",
        ),
    ]
    text, index = "", []
    for headwords, entry in entries:
        offset = len(text.encode())
        text += entry
        index += [f"{word}\t{_b64(offset)}\t{_b64(len(entry.encode()))}" for word in headwords]
    (tmp_path / "foldoc.dict").write_text(text, encoding="utf-8")
    (tmp_path / "foldoc.index").write_text("\n".join(sorted(index)) + "\n", encoding="utf-8")

    build("foldoc_set.py", "--dictionary", str(tmp_path / "foldoc.dict"), "--out", str(tmp_path / "set"))
    dataset = load_dataset(tmp_path / "set", "test")
    assert set(dataset.corpus) == {"pascal", "virtual_lan", "grok"}
    assert dataset.corpus["pascal"].memory_text == (
        "Pascal\nIt emphasises structured programming and data structures and strong typing in teaching."
    )
    assert dataset.corpus["virtual_lan"].title == "virtual LAN"
    assert dataset.queries == {
        "q-pascal": "(After the mathematician Blaise Pascal) A language designed by N. Wirth around 1970.",
        "q-virtual_lan": "A logical grouping of nodes on one network.",
    }
    assert all(dataset.qrels[query] == {query[2:]: 1} for query in dataset.queries)
