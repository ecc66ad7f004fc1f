import Foundation
import Testing
@testable import StrataModels
import StrataJSON

/// Tool calls: the oracle for each format is the model family's own chat template, which renders
/// an assistant turn holding tool calls the way the model writes them; the parser must read back
/// exactly those calls. A forced call's grammar must produce texts the parser reads.
@Suite struct ToolCallTests {
    static let templates = Fixtures.root + "/chat/templates"

    static let calls: [(String, JSONValue)] = [
        ("get_weather", .object([("city", .string("Paris")), ("unit", .string("c"))])),
        ("add", .object([("a", .int(2)), ("b", .int(-3))])),
    ]

    static let tools: JSONValue = .array(calls.map { name, _ in
        .object([("type", "function"), ("function", .object([("name", .string(name)), ("description", "a tool"),
                                                             ("parameters", .object([("type", "object"), ("properties", .object([]))]))]))])
    })

    /// The text a template writes for an assistant turn of `calls`: the conversation with the
    /// turn minus the conversation before it.
    static func assistantText(_ template: ChatTemplate, calls: [(String, JSONValue)], tokens: [String: String]) throws -> String {
        let user: JSONValue = .object([("role", "user"), ("content", "What now?")])
        let toolCalls: JSONValue = .array(calls.enumerated().map { i, c in
            .object([("id", .string("abcdefgh\(i)")), ("type", "function"), ("function", .object([("name", .string(c.0)), ("arguments", c.1)]))])
        })
        let turn: JSONValue = .object([("role", "assistant"), ("content", ""), ("tool_calls", toolCalls)])
        var before = try template.render(messages: .array([user]), tools: tools, addGenerationPrompt: true, specialTokens: tokens)
        let full = try template.render(messages: .array([user, turn]), tools: tools, addGenerationPrompt: false, specialTokens: tokens)
        // DeepSeek's generation prompt opens (and closes) a think block its past turns do not show
        for suffix in ["</think>", "<think>\n"] where !full.hasPrefix(before) && before.hasSuffix(suffix) { before.removeLast(suffix.count) }
        #expect(full.hasPrefix(before), "the conversation with the turn starts as the one without it")
        var text = String(full.dropFirst(before.count))
        // the end-of-turn marker is the model's stop token, not part of its answer
        for end in ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "</s>", "<｜end▁of▁sentence｜>", "<|end_of_text|>"] {
            if let r = text.range(of: end, options: .backwards) { text = String(text[..<r.lowerBound]) }
        }
        return text
    }

    @Test(arguments: [("qwen2.5", ToolCallFormat.hermes, 2), ("qwen3", .hermes, 2), ("hermes-3-tool-use", .hermes, 2), ("llama-3.1", .llama3, 1),
                      ("llama-3.2", .llama3, 1), ("mistral-nemo", .mistral, 2), ("granite-3.3", .granite, 2), ("deepseek-r1-distill-qwen", .deepseek, 2)])
    func eachTemplatesCallsParseBack(name: String, format: ToolCallFormat, count: Int) throws {
        let source = try String(contentsOfFile: Self.templates + "/\(name).jinja", encoding: .utf8)
        #expect(ToolCallFormat.detect(template: source) == format)
        let tokens = ["bos_token": "<s>", "eos_token": "</s>"]
        let want = Array(Self.calls.prefix(count))   // Llama 3's templates write one call per turn
        var text = try Self.assistantText(ChatTemplate(source), calls: want, tokens: tokens)
        if format == .granite {
            // Granite 3.3's template renders no past calls; its system prompt says how to write one:
            // "respond only with <|tool_call|> followed by a JSON list of tools used"
            #expect(text.isEmpty && source.contains("respond only with <|tool_call|> followed by a JSON list of tools used"))
            text = "<|tool_call|>[" + want.map { #"{"name": "\#($0.0)", "arguments": \#($0.1.serialized())}"# }.joined(separator: ", ") + "]"
        }
        // Qwen3 writes an empty think block before its calls (reasoning, not content)
        let thinking = text.hasPrefix("<think>") ? String(text[..<text.range(of: "</think>")!.upperBound]) : ""
        let parsed = try #require(format.parse(text), "\(name): \(text)")
        #expect(parsed.calls.map(\.name) == want.map(\.0), "\(name): \(text)")
        for (c, w) in zip(parsed.calls, want) { #expect(try JSONValue.parse(c.arguments) == w.1, "\(name): \(c.arguments)") }
        #expect(parsed.content == thinking.trimmingCharacters(in: .whitespacesAndNewlines), "\(name): content '\(parsed.content)'")
        // streamed in pieces of every size: the same calls, nothing of them handed out as content
        for size in [1, 3, 7] {
            var s = ToolCallStream(format: format)
            var out = ""
            var i = text.startIndex
            while i < text.endIndex {
                let j = text.index(i, offsetBy: size, limitedBy: text.endIndex) ?? text.endIndex
                out += s.push(String(text[i..<j]))
                i = j
            }
            let (rest, calls) = s.finish()
            #expect(calls == parsed.calls && (out + rest).trimmingCharacters(in: .whitespacesAndNewlines) == thinking.trimmingCharacters(in: .whitespacesAndNewlines),
                    "\(name) by \(size): '\(out)' '\(rest)'")
        }
    }

    @Test func textWithoutACallStaysContent() {
        for f in ToolCallFormat.allCases {
            #expect(f.parse("Just an answer.") == nil)
            var s = ToolCallStream(format: f)
            let out = s.push("Just an ") + s.push("answer.")
            let (rest, calls) = s.finish()
            #expect(out + rest == "Just an answer." && calls.isEmpty, "\(f)")
        }
        // a marker followed by no well-formed call: content after all
        var s = ToolCallStream(format: .hermes)
        let out = s.push("Sure <tool_call>{not json")
        let (rest, calls) = s.finish()
        #expect(out == "Sure " && rest == "<tool_call>{not json" && calls.isEmpty)
    }

    /// A forced call's grammar: random walks over a byte vocabulary give texts the parser reads,
    /// naming an offered tool with arguments in its schema.
    @Test(arguments: ToolCallFormat.allCases)
    func forcedCallGrammarsProduceParsableCalls(format: ToolCallFormat) throws {
        let weather = try JSONValue.parse(#"{"type":"object","properties":{"city":{"type":"string","maxLength":6},"unit":{"enum":["c","f"]}},"required":["city","unit"]}"#)
        let add = try JSONValue.parse(#"{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"]}"#)
        let g = try Grammar(gbnf: format.grammar(tools: [("get_weather", weather), ("add", add)]))
        let (v, eos) = GrammarTests.vocabulary(extra: ["<tool_call>", "{\"name\": \"", "get_weather", "\"unit\": \"c\""])
        let c = TokenConstraint(grammar: g, vocabulary: v, eos: [eos])
        for _ in 0..<20 {
            var m = GrammarMatcher(c)
            var bytes: [UInt8] = []
            var n = 0
            while !m.isComplete && n < 400 {
                let d = c.distances(m.state)
                let best = d.min()!
                let t = (0..<d.count).filter { d[$0] <= max(400 - n - 1, Int(best)) }.randomElement()!
                _ = m.accept(t)
                if t != eos { bytes += v.tokenBytes[t] }
                n += 1
            }
            let text = String(decoding: bytes, as: UTF8.self)
            let parsed = try #require(format.parse(text), "\(format): \(text)")
            #expect(parsed.calls.count == 1 && ["get_weather", "add"].contains(parsed.calls[0].name), "\(text)")
            let args = try JSONValue.parse(parsed.calls[0].arguments)
            if parsed.calls[0].name == "add" { #expect(args["a"] != nil && args["b"] != nil) } else { #expect(args["unit"] != nil) }
        }
    }
}
