"""The example set builders that turn text shipped by Debian packages into BEIR folders (README,
"How the defaults were chosen"): each is built from tiny inputs and read back."""

import gzip
import subprocess
from pathlib import Path

from mimir_mcp.evaluation.beir import load_dataset
from tests.conftest import PYTHON

EXAMPLES = Path(__file__).resolve().parents[1]


def build(script: str, *args: str) -> None:
    made = subprocess.run([PYTHON, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]


def test_man_pages_set(tmp_path):
    """research/man_pages_set.py: NAME summaries find the DESCRIPTION of their page."""
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
    """research/python_reference_set.py: an object's first sentence finds the rest of its documentation."""
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
    """research/foldoc_set.py: an entry's first sentence finds its headword and the rest of the entry."""
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


def test_python_faq_set(tmp_path):
    """research/python_faq_set.py: a FAQ question finds the passages of its answer among all the prose."""
    sources = tmp_path / "_sources"
    for folder in ("faq", "library", "tutorial"):
        (sources / folder).mkdir(parents=True)
    first, second = " ".join(f"alpha{i}" for i in range(170)), " ".join(f"beta{i}" for i in range(170))
    (sources / "faq" / "general.rst.txt").write_text(
        # asked twice: a question with two right answers is no query (both answers stay documents)
        "How do I quit?\n--------------\n\nCall sys.exit with a status code.\n\n"
        "How do I quit?\n--------------\n\nPress the key that ends the input.\n",
        encoding="utf-8",
    )
    (sources / "faq" / "programming.rst.txt").write_text(
        ":tocdepth: 2\n\n===============\nProgramming FAQ\n===============\n\n.. only:: html\n\n   .. contents::\n\n"
        "General Questions\n=================\n\n"
        "How do I copy a file?\n---------------------\n\n"
        "Use :func:`shutil.copyfile` or the :ref:`copy recipes <copy-recipes>`; see\n"
        "`the shell docs <https://example.org/>`_ and ``cp`` for **more**.\n\n"
        '.. code-block:: python\n   :linenos:\n\n   shutil.copyfile("a", "b")\n\n'
        # too short an answer: a document, but no query
        "Why is the sky blue?\n--------------------\n\nBecause.\n\n"
        # two paragraphs over 2,000 characters together: two passages, both relevant
        f"What is a long answer?\n----------------------\n\n{first}\n\n{second}\n\n"
        # the question is in its answer: no query
        "Is it repeated?\n---------------\n\nYes: is it repeated? It is, now and then.\n",
        encoding="utf-8",
    )
    (sources / "library" / "os.rst.txt").write_text(  # the API reference: not part of the set
        "How do I list a directory?\n--------------------------\n\nCall os.listdir with its path.\n",
        encoding="utf-8",
    )
    (sources / "tutorial" / "intro.rst.txt").write_text(  # prose, but no FAQ: documents only
        "An Informal Introduction\n************************\n\nPython is easy to learn, see :mod:`os`.\n\n"
        "What next?\n==========\n\nRead the library reference after this tutorial.\n",
        encoding="utf-8",
    )
    build("python_faq_set.py", "--sources", str(sources), "--out", str(tmp_path / "set"))
    dataset = load_dataset(tmp_path / "set", "test")
    assert set(dataset.corpus) == {
        "faq/general-0-0",
        "faq/general-1-0",
        "faq/programming-2-0",
        "faq/programming-3-0",
        "faq/programming-4-0",
        "faq/programming-4-1",
        "faq/programming-5-0",
        "tutorial/intro-6-0",
        "tutorial/intro-7-0",
    }
    assert dataset.corpus["faq/programming-2-0"].memory_text == (
        'Use shutil.copyfile or the copy recipes; see the shell docs and cp for more. shutil.copyfile("a", "b")'
    )
    assert dataset.corpus["faq/programming-4-0"].memory_text == first
    assert dataset.corpus["faq/programming-4-1"].memory_text == second
    assert dataset.corpus["tutorial/intro-6-0"].memory_text == "Python is easy to learn, see os."
    assert all(document.title == "" for document in dataset.corpus.values())
    assert dataset.queries == {
        "q-faq/programming-2": "How do I copy a file?",
        "q-faq/programming-4": "What is a long answer?",
    }
    assert dataset.qrels == {
        "q-faq/programming-2": {"faq/programming-2-0": 1},
        "q-faq/programming-4": {"faq/programming-4-0": 1, "faq/programming-4-1": 1},
    }


def test_debian_faq_set(tmp_path):
    """research/debian_faq_set.py: a Debian FAQ question finds its answer among the FAQ's and the
    Debian Reference's passages; title pages and tables of contents are no passages."""
    faq = (
        "                      The Debian GNU/Linux FAQ\n\nTable of Contents\n\n"
        "    1.1. What is this FAQ?\n    1.2. What is the difference between Debian and others?\n\n"
        "Chapter 1. Definitions and overview\n\n"
        "1.1.\xa0What is this FAQ?\n\n\xa0 \xa0 This document answers questions\n    that users often ask.\n\n"
        "1.2.\xa0What is the difference between Debian and\nother distributions?\n\n"
        "    Debian is made by volunteers.\n\n    Its packages are free software.\n\n"
        "1.3.\xa0Is it good?\n\n    Yes.\n"
    )
    reference = (
        "Debian Reference\n\nChapter 1. GNU/Linux tutorials\n\n    Learning a computer system is like\n"
        "    learning a new language.\n\n1.1.\xa0Console basics\n\n    The shell prompt waits for a command.\n"
    )
    (tmp_path / "faq.txt.gz").write_bytes(gzip.compress(faq.encode()))
    (tmp_path / "reference.txt").write_text(reference, encoding="utf-8")
    build(
        "debian_faq_set.py",
        *("--faq", str(tmp_path / "faq.txt.gz"), "--reference", str(tmp_path / "reference.txt")),
        *("--out", str(tmp_path / "set")),
    )
    dataset = load_dataset(tmp_path / "set", "test")
    assert {doc_id: doc.memory_text for doc_id, doc in dataset.corpus.items()} == {
        "faq-0-0": "This document answers questions that users often ask.",
        "faq-1-0": "Debian is made by volunteers. Its packages are free software.",
        "faq-2-0": "Yes.",
        "reference-3-0": "Learning a computer system is like learning a new language.",
        "reference-4-0": "The shell prompt waits for a command.",
    }
    assert dataset.queries == {
        "q-faq-0": "What is this FAQ?",
        "q-faq-1": "What is the difference between Debian and other distributions?",
    }
    assert dataset.qrels == {"q-faq-0": {"faq-0-0": 1}, "q-faq-1": {"faq-1-0": 1}}


def test_info_index_set(tmp_path):
    """research/info_index_set.py: a manual's index entry finds the passage holding the line it points to;
    index nodes and menus are no passages; a one-word entry and an entry two places share are no queries;
    a split manual's parts are read in order, Python's manual not at all."""
    first = "Alpha " * 330  # 1,980 characters: the next paragraph starts a passage of its own
    tool = (
        "This is tool.info, produced by makeinfo.\n"
        "\x1f\nFile: tool.info,  Node: Top,  Next: Usage,  Up: (dir)\n\nTool\n****\n\n"
        "Tool does things.\n\n* Menu:\n\n* Usage::   How to use it.\n"
        f"\x1f\nFile: tool.info,  Node: Usage,  Prev: Top,  Up: Top\n\n1 Usage\n=======\n\n{first.strip()}\n\n"
        "Exit status is zero\nwhen all went well.\n"
        "\x1f\nFile: tool.info,  Node: Index,  Prev: Usage,  Up: Top\n\nIndex\n*****\n\n* Menu:\n\n"
        "* exit status:                           Usage.               (line 9)\n"
        "* a very long index entry that wraps onto the next line, usage: Usage.\n"
        "                                                              (line 3)\n"
        "* blank line before status:              Usage.               (line 8)\n"
        "* overview:                              Top.                 (line 3)\n"
        "* shared entry:                          Top.                 (line 3)\n"
        "* shared entry <1>:                      Usage.               (line 9)\n"
    )
    (tmp_path / "tool.info.gz").write_bytes(gzip.compress(tool.encode()))
    (tmp_path / "split.info").write_text("This is split.info.\n\x1f\nIndirect:\nsplit.info-1: 100\n")
    (tmp_path / "split.info-1").write_text(
        "\x1f\nFile: split.info,  Node: Top,  Up: (dir)\n\nSplit manuals come in parts.\n"
        "\x1f\nFile: split.info,  Node: Index,  Up: Top\n\n* Menu:\n\n"
        "* parts of manuals:                      Top.                 (line 3)\n"
    )
    (tmp_path / "python3.11.info").write_text(
        "\x1f\nFile: python3.11.info,  Node: Top,  Up: (dir)\n\nPython.\n"
        "\x1f\nFile: python3.11.info,  Node: Index,  Up: Top\n\n* Menu:\n\n"
        "* python language:                       Top.                 (line 3)\n"
    )
    build("info_index_set.py", "--info", str(tmp_path), "--out", str(tmp_path / "set"))
    dataset = load_dataset(tmp_path / "set", "test")
    assert {doc_id: doc.memory_text for doc_id, doc in dataset.corpus.items()} == {
        "split-0-0": "Split manuals come in parts.",
        "tool-2-0": "Tool Tool does things.",  # the heading without its underline, the menu left out
        "tool-3-0": f"1 Usage {first.strip()}",
        "tool-3-1": "Exit status is zero when all went well.",
    }
    asked = {text: dataset.qrels[qid] for qid, text in dataset.queries.items()}
    assert asked == {
        "exit status": {"tool-3-1": 1},
        "a very long index entry that wraps onto the next line, usage": {"tool-3-0": 1},
        "blank line before status": {"tool-3-1": 1},  # a blank line belongs to the paragraph after it
        "parts of manuals": {"split-0-0": 1},
    }


def test_perl_doc_set(tmp_path):
    """research/perl_doc_set.py: POD to plain passages (formatting codes to their text, index codes gone,
    ``=begin`` blocks and the tables of contents left out); ``index``: an entry of two words or more finds
    the passage of its paragraph (the next one when alone); ``faq``: a FAQ question finds its section's
    passages, which do not hold it."""
    pod = tmp_path / "pod"
    pod.mkdir()
    (pod / "perlop.pod").write_text(
        "\n=encoding utf8\n\n=head1 NAME\n\nperlop - operators\n\n"
        "=head2 Operator Precedence X<operator, precedence> X<precedence>\n\n"
        "B<Operator> precedence means C<< $a->b >> binds E<gt> I<tighter> than L<the manual|perlsyn>.\n\n"
        "=begin html\n\n<p>hidden</p>\n\n=end html\n\n"
        "X<string repetition> X<shared entry>\n\n=over 4\n\n=item x\n\nRepeats a string E<0x41>Z<>.\n\n=back\n"
    )
    (pod / "perlsyn.pod").write_text("=head1 NAME\n\nperlsyn - syntax X<shared entry>\n")
    (pod / "perlfaq4.pod").write_text(
        "=head1 NAME\n\nperlfaq4 - Data\n\n=head2 How do I repeat a string?\n\nUse the x operator on it.\n\n"
        "=head2 Why?\n\nShort.\n\n=head2 Not a question\n\nSome text here for a heading.\n"
    )
    for skipped in ("perltoc", "perlfaq", "perl5360delta"):  # tables of contents, release notes
        (pod / f"{skipped}.pod").write_text("=head1 NAME\n\nHow do I repeat a string? X<string repetition>\n")
    build("perl_doc_set.py", "--kind", "index", "--pod", str(pod), "--out", str(tmp_path / "index"))
    index = load_dataset(tmp_path / "index", "test")
    assert {doc_id: doc.memory_text for doc_id, doc in index.corpus.items()} == {
        "perlfaq4-0": "NAME perlfaq4 - Data How do I repeat a string? Use the x operator on it. Why? Short. "
        "Not a question Some text here for a heading.",
        "perlop-0": "NAME perlop - operators Operator Precedence Operator precedence means $a->b binds > tighter "
        "than the manual. x Repeats a string A.",
        "perlsyn-0": "NAME perlsyn - syntax",
    }
    asked = {text: index.qrels[qid] for qid, text in index.queries.items()}
    # "precedence" is one word, "shared entry" sits in two PODs: no queries
    assert asked == {"operator, precedence": {"perlop-0": 1}, "string repetition": {"perlop-0": 1}}
    build("perl_doc_set.py", "--kind", "faq", "--pod", str(pod), "--out", str(tmp_path / "faq"))
    faq = load_dataset(tmp_path / "faq", "test")
    assert "How do I repeat a string?" not in " ".join(doc.memory_text for doc in faq.corpus.values())
    asked = {text: faq.qrels[qid] for qid, text in faq.queries.items()}
    assert asked == {"How do I repeat a string?": {"perlfaq4-2-0": 1}}  # "Why?" has an answer under five words
    assert faq.corpus["perlfaq4-2-0"].memory_text == "Use the x operator on it."


def test_small_store_set(tmp_path):
    """research/small_store_set.py: a random store around random queries, and each group's first memories
    with the queries they answer."""
    from mimir_mcp.evaluation.beir import Document, write_dataset

    corpus = [Document(f"{c}-{n}", "", f"conversation {c} turn {n}") for c in "ab" for n in range(6)]
    queries = {f"{c}-q{n}": f"question {n} of {c}" for c in "ab" for n in range(3)}
    qrels = {
        "a-q0": {"a-0": 1},
        "a-q1": {"a-1": 1, "a-4": 1},  # its second turn is past the first three
        "a-q2": {"a-2": 1},
        "b-q0": {"b-5": 1},
        "b-q1": {"b-0": 1},
        "b-q2": {"b-1": 1},
    }
    write_dataset(tmp_path / "full", corpus, queries, qrels)
    build(
        "small_store_set.py",
        *("--dataset", str(tmp_path / "full"), "--first", "3", "--group-by-prefix", "-"),
        *("--out", str(tmp_path / "first")),
    )
    first = load_dataset(tmp_path / "first", "test")
    assert list(first.corpus) == ["a-0", "a-1", "a-2", "b-0", "b-1", "b-2"]
    assert first.qrels == {"a-q0": {"a-0": 1}, "a-q2": {"a-2": 1}, "b-q1": {"b-0": 1}, "b-q2": {"b-1": 1}}
    assert first.queries == {query_id: queries[query_id] for query_id in first.qrels}

    args = ("--dataset", str(tmp_path / "full"), "--sample", "5", "--queries", "2", "--seed", "3")
    build("small_store_set.py", *args, "--out", str(tmp_path / "sample"))
    build("small_store_set.py", *args, "--out", str(tmp_path / "again"))
    sampled, again = load_dataset(tmp_path / "sample", "test"), load_dataset(tmp_path / "again", "test")
    assert len(sampled.corpus) == 5 and len(sampled.qrels) == 2 and sampled.qrels == again.qrels  # seeded
    assert list(sampled.corpus) == [doc_id for doc_id in (d.id for d in corpus) if doc_id in sampled.corpus]
    for judged in sampled.qrels.values():  # every judged document of an asked query is in the store
        assert set(judged) <= set(sampled.corpus)


def test_conversation_windows_set(tmp_path):
    """research/conversation_windows_set.py: a session's turns in windows, never across sessions, and a
    question judged on the windows holding its turns (a judged turn not in the corpus judges nothing)."""
    from mimir_mcp.evaluation.beir import Document, write_dataset

    turns = [("a-D1", 3), ("a-D2", 2), ("b-D1", 4)]
    corpus = [Document(f"{s}:{n}", "", f"Speaker {s}: line {n}") for s, count in turns for n in range(1, count + 1)]
    queries = {"a-q0": "first?", "a-q1": "second?", "b-q0": "third?", "b-q1": "gone?"}
    qrels = {
        "a-q0": {"a-D1:1": 1, "a-D1:2": 2},
        "a-q1": {"a-D1:3": 1, "a-D2:1": 1},
        "b-q0": {"b-D1:4": 1},
        "b-q1": {"b-D9:1": 1},
    }
    write_dataset(tmp_path / "turns", corpus, queries, qrels)
    build(
        "conversation_windows_set.py",
        "--dataset",
        str(tmp_path / "turns"),
        "--turns",
        "2",
        "--out",
        str(tmp_path / "w"),
    )
    built = load_dataset(tmp_path / "w", "test")
    assert {doc_id: doc.text for doc_id, doc in built.corpus.items()} == {
        "a-D1w0": "Speaker a-D1: line 1\nSpeaker a-D1: line 2",
        "a-D1w1": "Speaker a-D1: line 3",
        "a-D2w0": "Speaker a-D2: line 1\nSpeaker a-D2: line 2",
        "b-D1w0": "Speaker b-D1: line 1\nSpeaker b-D1: line 2",
        "b-D1w1": "Speaker b-D1: line 3\nSpeaker b-D1: line 4",
    }
    assert built.qrels == {"a-q0": {"a-D1w0": 2}, "a-q1": {"a-D1w1": 1, "a-D2w0": 1}, "b-q0": {"b-D1w1": 1}}
    assert built.queries == {query_id: queries[query_id] for query_id in built.qrels}
