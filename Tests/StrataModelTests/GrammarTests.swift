import Foundation
import Testing
@testable import StrataModels
import StrataJSON

/// The grammar machinery behind structured output: GBNF read into byte rules, the matcher and its
/// per-state token distances, and JSON Schemas compiled to grammars. Oracles: Foundation's
/// regular expressions for the languages, Swift's own UTF-8 encoder for the byte ranges, a naive
/// per-token walk for the trie, JSON parsing for the schema grammars (scripts/test_serve.py checks
/// the answers against the `jsonschema` package).
@Suite struct GrammarTests {
    /// A vocabulary of every single byte (ids 0...255), some multi-byte tokens, and an EOS.
    static func vocabulary(extra: [String]) -> (VocabularyTrie, eos: Int) {
        var toks: [[UInt8]] = (0...255).map { [UInt8($0)] }
        toks += extra.map { Array($0.utf8) }
        toks.append([])  // the EOS: no bytes
        return (VocabularyTrie(tokens: toks), toks.count - 1)
    }

    static let bytesOnly = vocabulary(extra: [])

    static func accepts(_ g: Grammar, _ text: String) -> Bool {
        let (v, eos) = bytesOnly
        var m = GrammarMatcher(TokenConstraint(grammar: g, vocabulary: v, eos: [eos]))
        for b in text.utf8 where !m.accept(Int(b)) { return false }
        return m.canEnd
    }

    @Test func utf8RangesEncodeExactlyTheirScalars() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let a = UInt32.random(in: 0...0x10FFFF, using: &rng), b = UInt32.random(in: 0...0x10FFFF, using: &rng)
            let lo = min(a, b), hi = min(max(a, b), lo + UInt32.random(in: 0...70000, using: &rng))
            let seqs = GrammarBuilder.utf8Sequences(lo, hi)
            func covered(_ bytes: [UInt8]) -> Int {
                seqs.filter { s in s.count == bytes.count && zip(s, bytes).allSatisfy { $0.contains($1) } }.count
            }
            for _ in 0..<50 {
                let c = UInt32.random(in: lo...hi, using: &rng)
                guard let s = Unicode.Scalar(c) else { continue }
                #expect(covered(Array(String(s).utf8)) == 1, "U+\(String(c, radix: 16)) in \(lo)...\(hi)")
            }
            for c in [lo &- 1, hi &+ 1] where c <= 0x10FFFF {
                guard let s = Unicode.Scalar(c) else { continue }
                #expect(covered(Array(String(s).utf8)) == 0, "U+\(String(c, radix: 16)) outside \(lo)...\(hi)")
            }
        }
    }

    /// Random strings over a small alphabet: the grammar accepts exactly what the equivalent
    /// regular expression matches.
    @Test(arguments: [
        (#"root ::= "a" [b-d]+ ("x" | "yz")?"#, #"^a[b-d]+(x|yz)?$"#),
        (#"root ::= ("ab" | "c"){2,3} [^abc]"#, #"^(ab|c){2,3}[^abc]$"#),
        ("root ::= item (\",\" item)*\nitem ::= [a-c] | \"(\" root \")\"", #"^$"#),
        (#"root ::= "é"* [à-ÿ] ."#, #"^é*[à-ÿ].$"#),
    ])
    func languagesMatchTheirRegularExpressions(gbnf: String, regex: String) throws {
        let g = try Grammar(gbnf: gbnf)
        let alphabet: [String] = ["a", "b", "c", "d", "x", "y", "z", ",", "(", ")", "é", "à", "ÿ", "€"]
        if regex == "^$" {
            // the recursive grammar: balanced lists, checked by a naive recursive reader
            func reads(_ s: [Character]) -> Bool {
                var i = 0
                func list() -> Bool {
                    guard item() else { return false }
                    while i < s.count, s[i] == "," { i += 1; guard item() else { return false } }
                    return true
                }
                func item() -> Bool {
                    guard i < s.count else { return false }
                    if "abc".contains(s[i]) { i += 1; return true }
                    guard s[i] == "(" else { return false }
                    i += 1
                    guard list(), i < s.count, s[i] == ")" else { return false }
                    i += 1
                    return true
                }
                return list() && i == s.count
            }
            var seen = 0
            for _ in 0..<3000 {
                let s = (0..<Int.random(in: 1...9)).map { _ in ["a", "b", ",", "(", ")"].randomElement()! }.joined()
                let want = reads(Array(s))
                if want { seen += 1 }
                #expect(Self.accepts(g, s) == want, "'\(s)'")
            }
            #expect(seen > 10)
            return
        }
        let re = try NSRegularExpression(pattern: regex)
        var matched = 0
        for n in 0..<4000 {
            let s = (0..<Int.random(in: 0...6)).map { _ in alphabet.randomElement()! }.joined()
            let want = re.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil
            if want { matched += 1 }
            #expect(Self.accepts(g, s) == want, "\(n): '\(s)' against \(regex)")
        }
        #expect(matched > 0)
    }

    /// A literal written for a schema (a JSON string literal) reads back as exactly its text.
    @Test func literalsOfAnyTextReadBack() throws {
        for text in ["plain", "q\"uote\\back", "tab\tnl\ncr\r", "\u{08}\u{0C}\u{01}\u{1F}", "é€😀", "[^x]*"] {
            let g = try Grammar(gbnf: "root ::= " + JSONSchemaGrammar.literal(text))
            #expect(Self.accepts(g, text), "\(text.debugDescription)")
            #expect(!Self.accepts(g, text + "x") && !Self.accepts(g, String(text.dropLast())))
        }
    }

    @Test func badGrammarsAreRefusedWithTheirPlace() {
        let cases: [(String, String)] = [
            ("root ::= x", "'x' is used but not defined"),
            ("root ::= root \"a\" | \"b\"", "left-recursive"),
            ("root ::= \"a\" root", "derives no finite text"),
            ("root ::= \"a", "unterminated string"),
            ("root ::= [a-", "unterminated character class"),
            ("root ::= *", "with nothing before it"),
            ("start ::= \"a\"", "no rule 'root'"),
            ("root ::= \"a\"{3,1}", "below the minimum"),
            ("root ::= \"a\"\nroot ::= \"b\"", "defined twice"),
        ]
        for (text, reason) in cases {
            #expect(throws: Grammar.ParseError.self) { try Grammar(gbnf: text) }
            do { _ = try Grammar(gbnf: text) } catch { #expect("\(error)".contains(reason), "\(text): \(error)") }
        }
    }

    /// The trie walk's answer for every token equals advancing the state by that token's bytes.
    @Test func distancesEqualAWalkOfEachToken() throws {
        let g = try JSONSchemaGrammar.grammar(schema: JSONValue.parse(#"{"type":"object","properties":{"name":{"type":"string"},"tags":{"type":"array","items":{"enum":["x","yy"]}},"n":{"type":"integer"}},"required":["name","n"]}"#))
        let (v, eos) = Self.vocabulary(extra: ["{\"", "name", "\":", "\":\"", "\",\"", "tags", "[\"x\"]", "\"}", "12", "}", " ", "yy\"", "\"n\":7}"])
        let c = TokenConstraint(grammar: g, vocabulary: v, eos: [eos])
        var m = GrammarMatcher(c)
        let text = #"{"name":"a\"b","tags":["yy","x"],"n":-40}"#
        var rng = SystemRandomNumberGenerator()
        var states = [m.state]
        for b in text.utf8 { let ok = m.accept(Int(b)); #expect(ok); states.append(m.state) }
        #expect(m.canEnd)
        for s in states.shuffled(using: &rng).prefix(20) {
            let d = c.distances(s)
            for t in 0..<v.vocabSize {
                let naive: UInt16
                if let after = c.advance(s, token: t) { naive = UInt16(c.distance(after)) } else { naive = TokenConstraint.refused }
                #expect(d[t] == naive, "token \(t) in state \(s)")
            }
        }
        #expect(c.distance(c.initial) == #"{"name":"","n":0}"#.utf8.count)
    }

    /// Sampling at random under a schema's grammar with a budget gives JSON that parses and has
    /// the required fields, closed within the budget.
    @Test func randomWalksUnderASchemaCloseWithinTheirBudget() throws {
        let schema = try JSONValue.parse(#"{"type":"object","properties":{"id":{"type":"integer","minimum":1,"maximum":5},"kind":{"enum":["a","b"]},"items":{"type":"array","items":{"type":"object","properties":{"x":{"type":"number"}},"required":["x"]},"minItems":1,"maxItems":3},"note":{"type":["string","null"]}},"required":["id","kind","items"]}"#)
        let g = try JSONSchemaGrammar.grammar(schema: schema)
        let (v, eos) = Self.vocabulary(extra: ["{\"", "\":", "\",\"", "[{\"x\":", "}]", "null", "\"a\"", "0.5", "abc", "é"])
        let c = TokenConstraint(grammar: g, vocabulary: v, eos: [eos])
        for budget in [60, 90, 200] {
            for _ in 0..<30 {
                var m = GrammarMatcher(c)
                var bytes: [UInt8] = []
                var n = 0
                while !m.isComplete && n < budget {
                    let d = c.distances(m.state)
                    let limit = budget - n - 1
                    let best = d.min()!
                    let ok = (0..<d.count).filter { d[$0] <= max(limit, Int(best)) }
                    let t = ok.randomElement()!
                    let took = m.accept(t)
                    #expect(took)
                    if t != eos { bytes += v.tokenBytes[t] }
                    n += 1
                }
                let text = String(decoding: bytes, as: UTF8.self)
                #expect(m.canEnd, "budget \(budget): '\(text)'")
                let value = try JSONValue.parse(text)
                #expect(value["id"] != nil && value["kind"] != nil && value["items"]?.arrayValue?.isEmpty == false, "\(text)")
            }
        }
    }

    @Test func schemasItCannotEnforceAreRefusedByKeyword() throws {
        let cases: [(String, String)] = [
            (#"{"type":"string","pattern":"^a+$"}"#, "pattern"),
            (#"{"type":"object","properties":{"a":{"type":"integer","multipleOf":3}}}"#, "multipleOf"),
            (#"{"type":"array","uniqueItems":true}"#, "uniqueItems"),
            (#"{"oneOf":[{"type":"integer"},{"type":"number"}]}"#, "oneOf"),
            (#"{"allOf":[{"type":"integer"},{"minimum":2}]}"#, "allOf"),
            (#"{"type":"string","format":"email"}"#, "format"),
            (#"{"$ref":"https://example.com/s.json"}"#, "$ref"),
            (#"{"type":"integer","minimum":5}"#, "minimum"),
            (#"{"type":"number","maximum":5}"#, "maximum"),
            (#"{"type":"object","patternProperties":{"^x":{}}}"#, "patternProperties"),
            (#"{"type":"wat"}"#, "type"),
            (#"false"#, "false"),
        ]
        for (text, keyword) in cases {
            do {
                _ = try JSONSchemaGrammar.gbnf(schema: JSONValue.parse(text))
                Issue.record("\(text) was accepted")
            } catch let e as JSONSchemaGrammar.Unsupported {
                #expect(e.keyword == keyword, "\(text): \(e)")
            }
        }
    }
}
