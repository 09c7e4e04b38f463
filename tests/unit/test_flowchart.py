"""BPMN flowcharts to catalog nodes: sequences, exclusive and parallel gateways, loops."""

import pytest
import yaml

from alerts.catalog import load_catalog
from alerts.flowchart import FlowchartError, catalog_nodes, read_bpmn, read_pnml


def bpmn(elements: str, flows: list[tuple[str, str]]) -> str:
    body = elements + "".join(f'<sequenceFlow id="f{i}" sourceRef="{a}" targetRef="{b}"/>'
                              for i, (a, b) in enumerate(flows))
    return ('<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"><process id="p">'
            f'<startEvent id="s"/><endEvent id="e"/>{body}</process></definitions>')


def tasks(*names):
    return "".join(f'<task id="{n}" name="{n} step"/>' for n in names)


def shape(nodes):
    return [(n.id, n.required, n.requires) for n in nodes]


def test_a_sequence():
    nodes = read_bpmn(bpmn(tasks("A1", "B1", "C1"), [("s", "A1"), ("A1", "B1"), ("B1", "C1"), ("C1", "e")]))
    assert shape(nodes) == [("A1", True, ()), ("B1", True, ("A1",)), ("C1", True, ("B1",))]


def test_exclusive_branches_are_optional():
    xml = bpmn(tasks("A1", "B1", "C1", "D1") + '<exclusiveGateway id="x"/><exclusiveGateway id="j"/>',
               [("s", "A1"), ("A1", "x"), ("x", "B1"), ("x", "C1"), ("B1", "j"), ("C1", "j"), ("j", "D1"),
                ("D1", "e")])
    assert shape(read_bpmn(xml)) == [("A1", True, ()), ("B1", False, ("A1",)), ("C1", False, ("A1",)),
                                     ("D1", True, ("A1",))]


def test_a_parallel_join_requires_every_branch():
    xml = bpmn(tasks("A1", "B1", "C1", "D1") + '<parallelGateway id="x"/><parallelGateway id="j"/>',
               [("s", "A1"), ("A1", "x"), ("x", "B1"), ("x", "C1"), ("B1", "j"), ("C1", "j"), ("j", "D1"),
                ("D1", "e")])
    assert shape(read_bpmn(xml)) == [("A1", True, ()), ("B1", True, ("A1",)), ("C1", True, ("A1",)),
                                     ("D1", True, ("B1", "C1"))]


LOOP = bpmn(tasks("A1", "B1", "C1") + '<exclusiveGateway id="x"/><exclusiveGateway id="y"/>',
            [("s", "A1"), ("A1", "x"), ("x", "B1"), ("B1", "y"), ("y", "x"), ("y", "C1"), ("C1", "e")])


def test_a_loop_is_rework_by_default_and_refused_when_strict():
    """Before, every task in a loop became optional: a case closed without B1, which every path
    passes once or again, was not a skip. A task only the way back passes (R1, a 补正) is optional."""
    nodes = read_bpmn(LOOP)
    assert shape(nodes) == [("A1", True, ()), ("B1", True, ("A1",)), ("C1", True, ("B1",))]
    assert [n.rework for n in nodes] == [False, True, False]
    back = bpmn(tasks("A1", "B1", "C1", "R1") + '<exclusiveGateway id="x"/><exclusiveGateway id="y"/>',
                [("s", "A1"), ("A1", "x"), ("x", "B1"), ("B1", "y"), ("y", "R1"), ("R1", "x"), ("y", "C1"),
                 ("C1", "e")])
    assert shape(read_bpmn(back)) == [("A1", True, ()), ("B1", True, ("A1",)), ("C1", True, ("B1",)),
                                      ("R1", False, ("B1",))]
    with pytest.raises(FlowchartError, match="loops back to earlier nodes.*B1 step"):
        read_bpmn(LOOP, strict=True)


def test_the_result_is_a_valid_catalog_item():
    item = {"code": "X", "name": "x", "category": "licensing", "department": "D", "promised_days": 5,
            "nodes": catalog_nodes(read_bpmn(LOOP))}
    catalog = load_catalog({"departments": [{"code": "D", "name": "D"}], "items": [item]})
    assert catalog.item("X").node("C1").requires == ("B1",)


@pytest.mark.parametrize("xml, words", [
    ("<definitions><process", "not well-formed"),
    (bpmn(tasks("A1") + '<inclusiveGateway id="o"/>', [("s", "A1"), ("A1", "o"), ("o", "e")]),
     "inclusiveGateway .* cannot be expressed"),
    (bpmn(tasks("A1", "Z1"), [("s", "A1"), ("A1", "e")]), "not reachable from the start"),
    (bpmn(tasks("A1"), [("s", "A1"), ("A1", "nowhere")]), "unknown element"),
    # Found by a black-box test: two tasks of one name were two nodes, and the log's 现场核查 could be
    # mapped to one of them only, so the other was "skipped" on every case.
    (bpmn('<userTask id="site_a" name="现场核查"/><userTask id="site_b" name=" 现场核查 "/>',
          [("s", "site_a"), ("site_a", "site_b"), ("site_b", "e")]),
     "tasks 'site_a' and 'site_b' are both named '现场核查': the catalog has one node per activity.*give each "
     "task a name of its own"),
])
def test_what_cannot_be_expressed_is_refused(xml, words):
    with pytest.raises(FlowchartError, match=words):
        read_bpmn(xml)


def test_annotations_and_data_are_ignored_and_an_intermediate_event_on_one_path_passes_the_flow_on():
    """Found by a black-box test: a data store (审批库), a group, a timer (等待5日) drawn on a
    licensing flowchart refused the whole flowchart, though none of them changes a case's path."""
    plain = shape(read_bpmn(bpmn(tasks("A1", "B1"), [("s", "A1"), ("A1", "B1"), ("B1", "e")])))
    drawn = ('<dataStoreReference id="ds" name="审批库"/><group id="g" categoryValueRef="cv"/>'
             '<textAnnotation id="t"><text>注</text></textAnnotation><association id="as" sourceRef="A1" targetRef="t"/>'
             '<dataObjectReference id="do"/><property id="pr" name="p"/>')
    for wait in ('<intermediateCatchEvent id="w" name="等待5日"><timerEventDefinition/></intermediateCatchEvent>',
                 '<intermediateCatchEvent id="w"><messageEventDefinition/></intermediateCatchEvent>',
                 '<intermediateThrowEvent id="w" name="通知"/>'):
        xml = bpmn(tasks("A1", "B1") + drawn + wait, [("s", "A1"), ("A1", "w"), ("w", "B1"), ("B1", "e")])
        assert shape(read_bpmn(xml)) == plain
    # Not on one path, or an event that is no wait (a link jumps elsewhere): refused, named, with what to do.
    timer = '<intermediateCatchEvent id="w" name="等待5日"><timerEventDefinition/></intermediateCatchEvent>'
    forked = bpmn(tasks("A1", "B1") + timer, [("s", "A1"), ("A1", "w"), ("w", "B1"), ("w", "e"), ("B1", "e")])
    with pytest.raises(FlowchartError, match=r"intermediateCatchEvent 'w' \(等待5日\) has 1 incoming and 2 outgoing "
                                             r"sequence flows.*draw a gateway"):
        read_bpmn(forked)
    link = bpmn(tasks("A1") + '<intermediateThrowEvent id="l"><linkEventDefinition/></intermediateThrowEvent>',
                [("s", "A1"), ("A1", "l"), ("l", "e")])
    with pytest.raises(FlowchartError, match="intermediateThrowEvent 'l' is a link event.*draw the flow"):
        read_bpmn(link)


def test_each_end_event_ends_a_path():
    """Found by a black-box test: a licensing flowchart with two end events (准予 and 不予许可, common
    in Chinese flowcharts) was refused, "found 1 and 2", without naming them. Each ends a path: a
    task every path to either passes is required; one that the refusal's path avoids is not."""
    two_ends = ('<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"><process id="p">'
                '<startEvent id="s"/><endEvent id="yes" name="准予"/><endEvent id="no" name="不予许可"/>'
                + tasks("A1", "B1", "C1", "D1") + '<exclusiveGateway id="x"/>'
                + "".join(f'<sequenceFlow id="f{i}" sourceRef="{a}" targetRef="{b}"/>' for i, (a, b) in enumerate(
                    [("s", "A1"), ("A1", "B1"), ("B1", "x"), ("x", "C1"), ("C1", "yes"), ("x", "D1"), ("D1", "no")]))
                + '</process></definitions>')
    assert shape(read_bpmn(two_ends)) == [("A1", True, ()), ("B1", True, ("A1",)), ("C1", False, ("B1",)),
                                          ("D1", False, ("B1",))]
    # Two start events, or none, or no end: named, with what to draw.
    with pytest.raises(FlowchartError, match=r"expected one start event, found 2: startEvent 's', startEvent 's2' "
                                             r"\(窗口\): draw one"):
        read_bpmn(two_ends.replace('<startEvent id="s"/>', '<startEvent id="s"/><startEvent id="s2" name="窗口"/>'))
    with pytest.raises(FlowchartError, match="found 0: draw one"):
        read_bpmn(two_ends.replace('<startEvent id="s"/>', ""))
    with pytest.raises(FlowchartError, match="no end event: draw one where each path ends"):
        read_bpmn(bpmn(tasks("A1"), [("s", "A1")]).replace('<endEvent id="e"/>', ""))


def test_the_caller_names_the_nodes_acceptance_and_closing_complete():
    nodes = read_bpmn(bpmn(tasks("A1", "B1", "C1"), [("s", "A1"), ("A1", "B1"), ("B1", "C1"), ("C1", "e")]))
    plain = catalog_nodes(nodes)
    assert all("completed_by" not in n for n in plain)  # a flowchart cannot say it
    named = catalog_nodes(nodes, accepted=["A1"], closed=["C1 step"])  # by id or by task name
    assert [n.get("completed_by") for n in named] == ["accepted", None, "closed"]
    with pytest.raises(FlowchartError, match="no task 'Z9'"):
        catalog_nodes(nodes, accepted=["Z9"])
    with pytest.raises(FlowchartError, match="both"):
        catalog_nodes(nodes, accepted=["A1"], closed=["A1"])


LICENSING = bpmn('<userTask id="shouli" name="受理"/><userTask id="shencha" name="审查"/>'
                 '<userTask id="jueding" name="作出许可决定"/><userTask id="songda" name="送达"/>',
                 [("s", "shouli"), ("shouli", "shencha"), ("shencha", "jueding"), ("jueding", "songda"),
                  ("songda", "e")])


def test_the_caller_names_the_node_the_decision_completes(tmp_path, capsys):
    """Found by a black-box test: a flowchart task that the log records as the case's decision
    (`decided`) was a node nothing completed, so every case was a false skipped_node red card for
    it (the road-traffic net's Create Fine: 100 cards on 100 cases); only a `decision_node` written
    by hand avoided it. `--decided-completes` names it, as the item's decision_node."""
    from alerts.calendar import WorkCalendar
    from alerts.evaluate import Judge
    from streams import cli
    from tests.unit.helpers import active, at, ev, run

    flowchart = tmp_path / "licence.bpmn"
    flowchart.write_text(LICENSING, encoding="utf-8")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("departments:\n- code: D\n  name: 某局\n"
                       "items:\n- code: XK-1\n  name: 许可\n  category: licensing\n  department: D\n"
                       "  promised_days: 20\n", encoding="utf-8")
    command = ["catalog", "import-bpmn", str(flowchart), "--item", "XK-1", "--catalog", str(catalog),
               "--accepted-completes", "受理"]
    assert cli.main([*command, "--decided-completes", "作出许可决定"]) == 0
    item = yaml.safe_load(catalog.read_text(encoding="utf-8"))["items"][0]
    assert list(item) == ["code", "name", "category", "department", "promised_days", "decision_node", "nodes"]
    assert item["decision_node"] == "jueding"
    judge = Judge(load_catalog(yaml.safe_load(catalog.read_text(encoding="utf-8"))),
                  WorkCalendar(on_missing_year=lambda year: None))
    case = [ev("accepted", at(2026, 3, 2), item="XK-1"), ev("node_completed", at(2026, 3, 3), item="XK-1",
                                                            node="shencha"),
            ev("decided", at(2026, 3, 4), item="XK-1", decision="approve"),
            ev("node_completed", at(2026, 3, 5), item="XK-1", node="songda"), ev("closed", at(2026, 3, 5, 16),
                                                                                 item="XK-1")]
    assert active(run(case, at(2026, 5, 1), judge)) == set()
    # Imported again without the option, the item keeps its decision node (by id, too).
    assert cli.main(command) == 0
    assert yaml.safe_load(catalog.read_text(encoding="utf-8"))["items"][0]["decision_node"] == "jueding"
    assert cli.main([*command, "--decided-completes", "songda"]) == 0
    assert yaml.safe_load(catalog.read_text(encoding="utf-8"))["items"][0]["decision_node"] == "songda"
    # Printed, the item has it too; a node the flowchart lacks is refused with the nodes it has.
    assert cli.main(command[:5] + ["--decided-completes", "审查"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["decision_node"] == "shencha"
    assert cli.main([*command, "--decided-completes", "批准"]) == 2
    assert "no task '批准' in the flowchart to be completed by decided: its nodes are ['shouli', 'shencha', " \
           "'jueding', 'songda']" in capsys.readouterr().err
    # A flowchart without the decision node the catalog names is refused, not written.
    before = catalog.read_text(encoding="utf-8")
    flowchart.write_text(LICENSING.replace('id="songda"', 'id="fasong"').replace('"songda"', '"fasong"'),
                         encoding="utf-8")
    with pytest.raises(SystemExit, match="decision_node 'songda' is not a node of .*--decided-completes NODE"):
        cli.main(command)
    assert catalog.read_text(encoding="utf-8") == before


CATALOG_WITH_COMMENTS = """\
# 某市职权目录 (the city's catalog)
departments:
  - code: D
    name: 某局   # 简称
    region: "320200"

items:
  # 许可类事项
  - code: "XK-1"
    name: 许可
    category: licensing
    department: D
    promised_days: 20
    nodes:
      - {id: old, name: 旧环节, completed_by: accepted}   # to be replaced
  # 处罚类事项：法规科审核
  - code: "CF-1"
    name: 处罚
    category: penalty
    department: D
    promised_days: 30   # 法定期限
    nodes:
      - id: accept
        name: 受理
        completed_by: accepted
      - id: close
        name: 办结
        completed_by: closed
    # 处罚类结束
"""


def test_a_flowchart_written_into_a_catalog_keeps_the_rest_of_the_file_as_it_was(tmp_path, capsys):
    """Before, writing an item's nodes into a catalog file dropped every comment but the opening
    ones, and rewrote every other item's layout: an operator's notes on other items were lost.
    Now only the item's nodes (and its decision node) change; the new nodes are written in the
    style of the old ones. A file whose layout cannot be given back is written anew, and said."""
    from streams import cli

    flowchart = tmp_path / "licence.bpmn"
    flowchart.write_text(LICENSING, encoding="utf-8")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG_WITH_COMMENTS, encoding="utf-8")
    command = ["catalog", "import-bpmn", str(flowchart), "--catalog", str(catalog), "--accepted-completes", "受理"]
    assert cli.main([*command, "--item", "XK-1", "--decided-completes", "作出许可决定"]) == 0
    written = catalog.read_text(encoding="utf-8")
    before, after = CATALOG_WITH_COMMENTS.splitlines(), written.splitlines()
    assert after[:13] == before[:13] and after[-10:] == before[-10:]  # all but the item's nodes, as they were
    assert after[13:20] == ["    decision_node: jueding", "    nodes:",
                            "      - {id: shouli, name: 受理, requires: [], completed_by: accepted}",
                            "      - {id: shencha, name: 审查, requires: [shouli]}",
                            "      - {id: jueding, name: 作出许可决定, requires: [shencha]}",
                            "      - {id: songda, name: 送达, requires: [jueding]}",
                            "  # 处罚类事项：法规科审核"]
    assert "written anew" not in capsys.readouterr().err
    raw = yaml.safe_load(written)
    load_catalog(raw)
    assert [n["id"] for n in raw["items"][0]["nodes"]] == ["shouli", "shencha", "jueding", "songda"]
    # Into an item written in block style, in block style; the comment after it stays after it.
    assert cli.main([*command, "--item", "CF-1"]) == 0
    after = catalog.read_text(encoding="utf-8").splitlines()
    assert after[:26] == written.splitlines()[:26] and after[-1] == "    # 处罚类结束"
    assert after[26:30] == ["      - id: shouli", "        name: 受理", "        requires: []",
                            "        completed_by: accepted"]
    assert yaml.safe_load("\n".join(after))["items"][1]["nodes"][3] == {"id": "songda", "name": "送达",
                                                                         "requires": ["jueding"]}
    # Laid out in a way the round trip cannot give back (two lists indented differently), it is
    # written anew.
    odd = CATALOG_WITH_COMMENTS.replace('  - code: D\n    name: 某局   # 简称\n    region: "320200"',
                                        '- code: D\n  name: 某局   # 简称\n  region: "320200"')
    assert odd != CATALOG_WITH_COMMENTS
    assert yaml.safe_load(odd) == yaml.safe_load(CATALOG_WITH_COMMENTS)
    catalog.write_text(odd, encoding="utf-8")
    assert cli.main([*command, "--item", "XK-1"]) == 0
    assert "is written anew; its comments but the opening ones are not kept" in capsys.readouterr().err
    rewritten = catalog.read_text(encoding="utf-8")
    assert rewritten.startswith("# 某市职权目录") and "# 处罚类结束" not in rewritten
    assert [n["id"] for n in yaml.safe_load(rewritten)["items"][0]["nodes"]] == ["shouli", "shencha", "jueding",
                                                                               "songda"]


def test_tasks_named_in_chinese_keep_their_bpmn_ids():
    """Before, a task named only in Chinese became `node`, `node_2`, ...: ids that say nothing and
    that no workflow engine reports. Now it is the task's BPMN id (the engine's activity id)."""
    xml = bpmn('<userTask id="Activity_0sl1" name="受理"/><userTask id="Activity_1sh" name="审核"/>'
               '<userTask id="Activity_2" name="01 办结"/><userTask id="Task 3" name="送达"/>',
               [("s", "Activity_0sl1"), ("Activity_0sl1", "Activity_1sh"), ("Activity_1sh", "Activity_2"),
                ("Activity_2", "Task 3"), ("Task 3", "e")])
    nodes = read_bpmn(xml)
    assert [(n.id, n.name) for n in nodes] == [("Activity_0sl1", "受理"), ("Activity_1sh", "审核"), ("01", "01 办结"),
                                               ("node", "送达")]  # an id that is no identifier is not taken
    assert nodes[1].requires == ("Activity_0sl1",)


# -- Petri nets (PNML) ------------------------------------------------------------------------------


def pnml(transitions: dict[str, str | None], arcs: list[tuple[str, str]], start: str = "i", end: str = "o",
         final: bool = True, namespace: bool = False) -> str:
    """A workflow net: places are the arcs' ends that are not transitions; `transitions` maps an id
    to its label, None for a silent one (ProM's $invisible$, as PM4Py writes it)."""
    places = [n for arc in arcs for n in arc if n not in transitions]
    body = "".join(f'<place id="{p}"><name><text>{p}</text></name>'
                   + ('<initialMarking><text>1</text></initialMarking>' if p == start else '') + '</place>'
                   for p in dict.fromkeys(places))
    for ident, label in transitions.items():
        if label is None:
            body += (f'<transition id="{ident}"><name><text>{ident}</text></name>'
                     f'<toolspecific tool="ProM" version="6.4" activity="$invisible$"/></transition>')
        else:
            body += f'<transition id="{ident}"><name><text>{label}</text></name></transition>'
    body += "".join(f'<arc id="a{n}" source="{a}" target="{b}"/>' for n, (a, b) in enumerate(arcs))
    markings = (f'<finalmarkings><marking><place idref="{end}"><text>1</text></place></marking></finalmarkings>'
                if final else "")
    xmlns = ' xmlns="http://www.pnml.org/version-2009/grammar/pnml"' if namespace else ""
    return f'<?xml version="1.0"?><pnml{xmlns}><net id="n" type="pt"><page id="p0">{body}</page>{markings}</net></pnml>'


def test_a_petri_net_is_read_as_its_flowchart_would_be():
    """A sequence, a choice with a silent skip (optional), and a parallel split and join (the join
    requires both branches): as in the flowcharts above, whatever the namespace or final marking."""
    transitions = {"ta": "A1 accept", "skip": None, "tb": "B1 check", "split": None, "tc": "C1 left",
                   "td": "D1 right", "join": None, "te": "E1 close"}
    arcs = [("i", "ta"), ("ta", "p1"), ("p1", "tb"), ("p1", "skip"), ("tb", "p2"), ("skip", "p2"),
            ("p2", "split"), ("split", "p3"), ("split", "p4"), ("p3", "tc"), ("p4", "td"), ("tc", "p5"),
            ("td", "p6"), ("p5", "join"), ("p6", "join"), ("join", "p7"), ("p7", "te"), ("te", "o")]
    expected = [("A1", True, ()), ("B1", False, ("A1",)), ("C1", True, ("A1",)), ("D1", True, ("A1",)),
                ("E1", True, ("C1", "D1"))]
    for final, namespace in ((True, False), (False, True)):
        assert shape(read_pnml(pnml(transitions, arcs, final=final, namespace=namespace))) == expected
    # A labelled transition that itself joins and splits: a parallel join before it, a split after.
    visible = {"ta": "A1", "tb": "B1", "tc": "C1", "td": "D1", "te": "E1"}
    arcs = [("i", "ta"), ("ta", "p1"), ("ta", "p2"), ("p1", "tb"), ("p2", "tc"), ("tb", "p3"), ("tc", "p4"),
            ("p3", "td"), ("p4", "td"), ("td", "p5"), ("p5", "te"), ("te", "o")]
    assert shape(read_pnml(pnml(visible, arcs))) == [("A1", True, ()), ("B1", True, ("A1",)), ("C1", True, ("A1",)),
                                                     ("D1", True, ("B1", "C1")), ("E1", True, ("D1",))]


def test_a_loop_in_a_petri_net_is_rework():
    transitions = {"ta": "A1", "tb": "B1", "redo": None, "done": None, "tc": "C1"}
    arcs = [("i", "ta"), ("ta", "p1"), ("p1", "tb"), ("tb", "p2"), ("p2", "redo"), ("redo", "p1"),
            ("p2", "done"), ("done", "p3"), ("p3", "tc"), ("tc", "o")]
    nodes = read_pnml(pnml(transitions, arcs))
    assert shape(nodes) == [("A1", True, ()), ("B1", True, ("A1",)), ("C1", True, ("B1",))]
    assert [n.rework for n in nodes] == [False, True, False]
    with pytest.raises(FlowchartError, match="loops back"):
        read_pnml(pnml(transitions, arcs), strict=True)


@pytest.mark.parametrize("xml, words", [
    ("<pnml><net", "not well-formed PNML"),
    ("<definitions><process id='p'/></definitions>", r"expected one <net> \(a PNML Petri net\), found 0"),
    (pnml({"ta": "A1", "tb": "A1"}, [("i", "ta"), ("ta", "p"), ("p", "tb"), ("tb", "o")]),
     "share the label 'A1'"),
    (pnml({"ta": "A1"}, [("i", "ta"), ("ta", "o")]).replace('<arc id="a1"', '<arc id="a1"><inscription><text>2'
                                                            '</text></inscription></arc><arc id="x"'),
     "weight 2"),
    (pnml({"ta": "A1"}, [("i", "ta"), ("ta", "o")]).replace("<text>1</text></initialMarking>",
                                                            "<text>2</text></initialMarking>"),
     "not a workflow net"),
    (pnml({"ta": "A1", "tb": "B1"}, [("i", "ta"), ("ta", "o"), ("i", "tb"), ("tb", "o2")], final=False),
     "not a workflow net.*2 ending"),
    (pnml({"ta": "A1", "tz": "Z1"}, [("i", "ta"), ("ta", "o"), ("tz", "o")]), "'Z1' has no input place"),
    (pnml({"ta": "A1"}, [("i", "ta"), ("ta", "ta")]), "does not join a place and a transition"),
    (pnml({"ta": "A1"}, [("i", "ta"), ("ta", "o")]).replace('idref="o"', 'idref="nowhere"'),
     r"final marking names places the net does not have: \['nowhere'\]"),
    (pnml({"ta": "A1"}, [("i", "ta"), ("ta", "o")]).replace('<arc id="a1"', '<arc id="a1"><arctype><text>inhibitor'
                                                            '</text></arctype></arc><arc id="x"'),
     "inhibitor arc"),
    (pnml({"ta": "A1", "reopen": "R1"}, [("i", "ta"), ("ta", "o"), ("o", "reopen"), ("reopen", "p")]),
     "ends the process .* has output arcs"),
])
def test_what_a_petri_net_cannot_say_in_the_catalog_is_refused(xml, words):
    with pytest.raises(FlowchartError, match=words):
        read_pnml(xml)


def test_a_stochastic_net_s_silent_transitions_are_silent():
    """PM4Py writes a stochastic net's timing before ProM's $invisible$, and marks a silent
    transition there too: only the first toolspecific was read, so every silent transition was a
    task named by its id, and a required one (`tau_end`) a red card on every closed case (found by
    a review)."""
    xml = pnml({"ta": "A1", "skip": None, "tb": "B1", "tau_end": None},
               [("i", "ta"), ("i", "skip"), ("ta", "p1"), ("skip", "p1"), ("p1", "tb"), ("tb", "p2"),
                ("p2", "tau_end"), ("tau_end", "o")])
    stochastic = ('<toolspecific tool="StochasticPetriNet" version="0.2"><property key="distributionType">IMMEDIATE'
                  '</property><property key="invisible">true</property></toolspecific>')
    xml = xml.replace('<toolspecific tool="ProM"', stochastic + '<toolspecific tool="ProM"')
    assert shape(read_pnml(xml)) == [("A1", False, ()), ("B1", True, ())]
    # ... and marked silent by the stochastic element alone
    alone = xml.replace('<toolspecific tool="ProM" version="6.4" activity="$invisible$"/>', "")
    assert shape(read_pnml(alone)) == [("A1", False, ()), ("B1", True, ())]


def test_a_petri_net_s_chinese_labels_are_its_node_ids():
    """PM4Py gives each transition a random uuid for its id: a label without Latin letters took it
    (or `node`, `node_2`), so a second export of the same model renamed every node (found by a
    review). The label is the id, as the event log names the activity."""
    ids = {"9f2c-1": "受理", "a77e-2": "审核", "0b1d-3": "办 结"}
    arcs = [("i", "9f2c-1"), ("9f2c-1", "p1"), ("p1", "a77e-2"), ("a77e-2", "p2"), ("p2", "0b1d-3"), ("0b1d-3", "o")]
    nodes = read_pnml(pnml(ids, arcs))
    assert [(n.id, n.name, n.requires) for n in nodes] == [("受理", "受理", ()), ("审核", "审核", ("受理",)),
                                                           ("办_结", "办 结", ("审核",))]
