import Foundation
import Testing
@testable import StrataJinja

/// The chat-template corpus (published templates of real model families) rendered over several
/// conversations must match Python jinja2 configured as transformers configures it, byte for
/// byte (`scripts/make_chat_fixtures.py` writes the expected texts).
@Suite struct ChatTemplateCorpusTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/chat")

    @Test func everyCaseRendersAsJinja2Does() throws {
        setenv("STRATA_DATE", "2026-07-26", 1)
        let doc = try JSONValue.parse(Data(contentsOf: Self.root.appendingPathComponent("cases.json")))
        guard let cases = doc["cases"]?.arrayValue, let convs = doc["conversations"] else { Issue.record("no cases"); return }
        #expect(cases.count >= 300)
        var templates: [String: ChatTemplate] = [:]
        var failures: [String] = []
        var rendered = 0, raised = 0
        for c in cases {
            let name = c["template"]!.stringValue!, conv = c["conversation"]!.stringValue!
            let agp = c["add_generation_prompt"] == .bool(true)
            let label = "\(name)/\(conv)/agp=\(agp)"
            if templates[name] == nil {
                let src = try String(contentsOf: Self.root.appendingPathComponent("templates/\(name).jinja"), encoding: .utf8)
                templates[name] = try ChatTemplate(src)
            }
            let conversation = convs[conv]!
            let tokens = ["bos_token": c["bos_token"]!.stringValue!, "eos_token": c["eos_token"]!.stringValue!]
            do {
                let text = try templates[name]!.render(messages: conversation["messages"]!, tools: conversation["tools"], addGenerationPrompt: agp,
                                                       specialTokens: tokens)
                if let want = c["text"]?.stringValue {
                    if text != want { failures.append("\(label): got \(text.debugDescription)\n   want \(want.debugDescription)") }
                    rendered += 1
                } else {
                    failures.append("\(label): rendered, but jinja2 raised \(c["error"]!.stringValue!)")
                }
            } catch {
                guard let want = c["error"]?.stringValue else { failures.append("\(label): \(error)"); continue }
                // raise_exception's message must be the template's own; other errors (a None
                // iterated) need only be errors
                if c["error_type"]?.stringValue == "TemplateError", "\(error)" != want {
                    failures.append("\(label): raised \(error), want \(want)")
                }
                raised += 1
            }
        }
        #expect(failures.isEmpty, Comment(rawValue: "\(failures.count) of \(cases.count) differ:\n" + failures.prefix(8).joined(separator: "\n")))
        #expect(rendered > 250 && raised > 20)
    }
}

/// Each language feature alone (whitespace control, operators, loops, macros, filters, tests,
/// methods), rendered as jinja2 renders it; syntax errors on the line jinja2 reports.
@Suite struct JinjaLanguageTests {
    static func fixtures() throws -> JSONValue {
        try JSONValue.parse(Data(contentsOf: ChatTemplateCorpusTests.root.appendingPathComponent("cases.json")))
    }

    @Test func featuresRenderAsJinja2Does() throws {
        setenv("STRATA_DATE", "2026-07-26", 1)
        let cases = try Self.fixtures()["language"]!.arrayValue!
        #expect(cases.count >= 35)
        for c in cases {
            let name = c["name"]!.stringValue!
            var vars: [String: Value] = [:]
            if case let .object(pairs)? = c["variables"] { for (k, v) in pairs { vars[k] = Value(json: v) } }
            do {
                let text = try Template(c["template"]!.stringValue!).render(vars)
                #expect(text == c["text"]?.stringValue, "\(name)")
            } catch {
                #expect(c["error"] != nil, "\(name): \(error)")
                if c["error_type"]?.stringValue == "TemplateError" { #expect("\(error)" == c["error"]?.stringValue, "\(name)") }
            }
        }
    }

    @Test func syntaxErrorsNameTheLineAndColumn() throws {
        for c in try Self.fixtures()["syntax_errors"]!.arrayValue! {
            let name = c["name"]!.stringValue!
            #expect(throws: JinjaError.self, "\(name)") { try Template(c["template"]!.stringValue!) }
            do {
                _ = try Template(c["template"]!.stringValue!)
            } catch let JinjaError.syntax(message, line, column) {
                #expect(line == Int(c["line"]! == .int(0) ? 0 : { if case let .int(l) = c["line"]! { return l }; return -1 }()), "\(name): \(message)")
                #expect(column >= 1, "\(name)")
            }
        }
        // the column points at the offending token
        do { _ = try Template("ab\n  {{ x | }}") } catch let JinjaError.syntax(_, line, column) {
            #expect(line == 2 && column == 10)
        }
    }

    @Test func hostileTemplatesStopWithAnError() throws {
        // unbounded recursion, huge ranges and repetition end in errors, not crashes
        #expect(throws: JinjaError.self) { try Template("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").render([:]) }
        #expect(throws: JinjaError.self) { try Template("{{ range(1000000000) | length }}").render([:]) }
        #expect(throws: JinjaError.self) { try Template("{{ 'x' * 100000000000 }}").render([:]) }
        let t = try Template("{% for a in range(2000) %}{% for b in range(2000) %}{{ 'xxxxxxxxxxxxxxxxxxxx' }}{% endfor %}{% endfor %}")
        t.maxOutputBytes = 1 << 20
        #expect(throws: JinjaError.self) { try t.render([:]) }
        #expect(throws: JinjaError.self) { try Template("{{ [].append(1) }}").render([:]) }
        #expect(throws: JinjaError.self) { try Template("{{ 1 // 0 }}").render([:]) }
    }

    /// Hostile input II, class 2: every way a template (model data) trapped, overflowed the
    /// stack, exhausted memory or ran without bound is an error naming the limit, and the values
    /// at the edges of Int are Python's where they fit.
    @Test func sandboxRefusesWhatWouldTrapOrRunAway() throws {
        let minInt = "(-9223372036854775807 - 1)"
        let hostile = [
            // integer overflow (Python's ints would grow; ours are 64-bit): an error, never a trap
            "{{ 9223372036854775807 + 1 }}", "{{ \(minInt) - 1 }}", "{{ 3037000500 * 3037000500 }}",
            "{{ -\(minInt) }}", "{{ \(minInt) // -1 }}", "{{ \(minInt) | abs }}",
            // repetition and ranges by huge counts (the product overflows Int)
            "{{ 'ab' * 9223372036854775807 }}", "{{ [1, 2] * 9223372036854775807 }}", "{{ 'x' * 4611686018427387904 }}",
            "{{ range(\(minInt), 9223372036854775807) | length }}", "{{ range(9223372036854775807, \(minInt), -1) | length }}",
            "{{ range(0, 9223372036854775807, 2) | length }}",
            // widths
            "{{ 'x' | center(9223372036854775807) }}", "{{ 'x' | center(1000000000) }}", "{{ 'a\nb' | indent(9223372036854775807) }}",
            "{{ ('a\n' * 100000) | indent(1000) }}", "{{ [[[[1]]]] | tojson(indent=9223372036854775807) }}",
            "{{ range(1000) | list | tojson(indent=100000) }}",
            // strings and lists that double without bound
            "{% set s = namespace(v='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set s.v = s.v + s.v %}{% endfor %}{{ s.v | length }}",
            "{% set s = namespace(v=[1]) %}{% for i in range(40) %}{% set s.v = s.v + s.v %}{% endfor %}{{ s.v | length }}",
            "{{ ('x' * 1000000) | replace('x', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx') | length }}",
            "{% set s = namespace(v='x') %}{% for i in range(40) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v | length }}",
            // deep nesting: the source, and values built by set
            String(repeating: "{% if true %}", count: 5000) + "x" + String(repeating: "{% endif %}", count: 5000),
            "{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}",
            "{{ " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + " }}",
            "{{ 1" + String(repeating: " + 1", count: 100000) + " }}",
            "{{ x" + String(repeating: "|string", count: 100000) + " }}",
            "{{ " + String(repeating: "not ", count: 100000) + "x }}",
            "{{ " + String(repeating: "-", count: 100000) + "1 }}",
            "{% set ns = namespace(v=[]) %}{% for i in range(100000) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v }}",
            "{% set ns = namespace(v={}) %}{% for i in range(100000) %}{% set ns.v = {'a': ns.v} %}{% endfor %}{{ ns.v | tojson }}",
            // no bound on work
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            "{% set l = range(100000) | list %}{% for a in range(100000) %}{% if a in l %}{% endif %}{% endfor %}",
            "{% macro f(n) %}{{ f(n) ~ f(n) }}{% endmacro %}{{ f(0) }}",
            "{{ [[1], [1]] | unique | list }}",  // jinja2: unhashable type: 'list'
        ]
        for src in hostile {
            #expect(throws: JinjaError.self, "\(src.prefix(120))") {
                let t = try Template(src)
                t.maxSteps = 200_000  // the default's mechanism, at a debug build's speed
                _ = try t.render(["x": .string("x")])
            }
        }
        // what fits in 64 bits is Python's answer (each checked with jinja2 3.1.6's
        // ImmutableSandboxedEnvironment, which gives these strings)
        let edges: [(String, String)] = [
            ("{{ \(minInt) }}", "-9223372036854775808"), ("{{ \(minInt) % -1 }}", "0"), ("{{ \(minInt) // 1 }}", "-9223372036854775808"),
            ("{{ 7 // -1 }}", "-7"), ("{{ -7 % -1 }}", "0"), ("{{ \(minInt) is divisibleby(-1) }}", "True"),
            ("{{ range(9223372036854775800, 9223372036854775807) | list | length }}", "7"),
            ("{{ range(\(minInt), \(minInt) + 10, 3) | list }}", "[-9223372036854775808, -9223372036854775805, -9223372036854775802, -9223372036854775799]"),
            ("{{ range(5, -5, -3) | list }}", "[5, 2, -1, -4]"), ("{{ 'ab' * -3 }}", ""), ("{{ [1] * 0 }}", "[]"),
            ("{{ 'x' | center(-9223372036854775807) }}", "x"),
            // libFuzzer's find (fuzz-chat): an empty string or list repeated 2^62 times looped 2^62 times
            ("{{ ('' * (2 ** 62)) | length }}", "0"), ("{{ ([] * (2 ** 62)) | length }}", "0"), ("{{ [1, 1.0, true, '1', none, none] | unique | list }}", "[1, '1', None]"),
            ("{{ ['A', 'a', 'b'] | unique | list }}", "['A', 'b']"), ("{{ ['A', 'a', 'b'] | unique(case_sensitive=true) | list }}", "['A', 'a', 'b']"),
            ("{{ (" + String(repeating: "(", count: 30) + "1" + String(repeating: ")", count: 30) + ") }}", "1"),
            (String(repeating: "{% if true %}", count: 100) + "deep" + String(repeating: "{% endif %}", count: 100), "deep"),
        ]
        for (src, want) in edges {
            #expect(try Template(src).render([:]) == want, "\(src.prefix(120))")
        }
    }

    @Test func jsonRoundTripKeepsOrderAndPythonFormatting() throws {
        let v = try JSONValue.parse(#"{"z": 1, "a": [1.5, true, null, "\u00e9\n"], "m": {}, "big": 1e300, "neg": -0.0001}"#)
        #expect(v.serialized() == #"{"z": 1, "a": [1.5, true, null, "é\n"], "m": {}, "big": 1e+300, "neg": -0.0001}"#)
        #expect(v.compact == #"{"z":1,"a":[1.5,true,null,"é\n"],"m":{},"big":1e+300,"neg":-0.0001}"#)
        for bad in ["{", "[1,]", "{\"a\" 1}", "01", "\"\u{01}\"", "nul", "1 2", String(repeating: "[", count: 600)] {
            #expect(throws: JSONError.self, "\(bad)") { try JSONValue.parse(bad) }
        }
    }
}
