import Foundation
import StrataJSON

/// One call of a tool, parsed out of a model's answer: the function's name and its arguments as
/// JSON text (OpenAI's `function.arguments` is a string).
public struct ToolCall: Sendable, Equatable {
    public var name: String
    public var arguments: String
    public init(name: String, arguments: String) { self.name = name; self.arguments = arguments }
}

/// How a model family writes tool calls in its answers, known from its chat template (the template
/// renders past calls the way the model was trained to write them):
///
/// | format | the call in the answer | templates |
/// | --- | --- | --- |
/// | `hermes` | `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, one block per call | Qwen2.5, Qwen3, Hermes 3, SmolLM3 |
/// | `llama3` | the whole answer `{"name": ..., "parameters": {...}}`, maybe after `<|python_tag|>` | Llama 3.1, 3.2 |
/// | `mistral` | `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]` | Mistral Nemo and later |
/// | `granite` | `<|tool_call|>[{"name": ..., "arguments": {...}}, ...]` | Granite 3.x |
/// | `deepseek` | `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{...}\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>` | DeepSeek R1 distills |
///
/// vLLM's tool parsers (`hermes`, `llama3_json`, `mistral`, `granite`, `deepseek_v3`) and
/// llama.cpp's chat parsers read the same texts.
public enum ToolCallFormat: String, Sendable, CaseIterable {
    case hermes, llama3, mistral, granite, deepseek

    /// The format a chat template writes tool calls in (nil: none known).
    public static func detect(template source: String) -> ToolCallFormat? {
        if source.contains("<tool_call>") { return .hermes }
        if source.contains("[TOOL_CALLS]") { return .mistral }
        if source.contains("<|tool_call|>") { return .granite }
        if source.contains("tool▁calls▁begin") { return .deepseek }
        if source.contains("<|python_tag|>") || (source.contains("\"parameters\"") && source.contains("tool_call.name")) { return .llama3 }
        return nil
    }

    /// The text that starts a call (for `llama3`, the answer's first non-space character).
    public var marker: String {
        switch self {
        case .hermes: return "<tool_call>"
        case .llama3: return "{"
        case .mistral: return "[TOOL_CALLS]"
        case .granite: return "<|tool_call|>"
        case .deepseek: return "<｜tool▁calls▁begin｜>"
        }
    }

    /// Markers a call may start with (llama3 also writes `<|python_tag|>` first).
    var markers: [String] { self == .llama3 ? ["{", "<|python_tag|>"] : [marker] }
    /// Whether a call may start anywhere (else only at the start of the answer).
    var anywhere: Bool { self != .llama3 }

    /// The calls in `text` and the content around them; nil when `text` holds no well-formed call
    /// (then the whole text is content, as vLLM's parsers answer).
    public func parse(_ text: String) -> (content: String, calls: [ToolCall])? {
        switch self {
        case .hermes:
            var calls: [ToolCall] = []
            var content = ""
            var rest = Substring(text)
            while let open = rest.range(of: "<tool_call>") {
                content += rest[..<open.lowerBound]
                let after = rest[open.upperBound...]
                let close = after.range(of: "</tool_call>")
                let body = close.map { after[..<$0.lowerBound] } ?? after
                guard let call = Self.call(String(body), argumentsKey: "arguments") else { return nil }
                calls.append(call)
                rest = close.map { after[$0.upperBound...] } ?? ""
            }
            content += rest
            return calls.isEmpty ? nil : (content.trimmingCharacters(in: .whitespacesAndNewlines), calls)
        case .llama3:
            var t = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if t.hasPrefix("<|python_tag|>") { t = String(t.dropFirst("<|python_tag|>".count)).trimmingCharacters(in: .whitespacesAndNewlines) }
            guard t.hasPrefix("{") else { return nil }
            // one call, or several separated by ';' (as the Llama 3 prompts suggest)
            var calls: [ToolCall] = []
            if let one = Self.call(t, argumentsKey: "parameters") ?? Self.call(t, argumentsKey: "arguments") { calls = [one] } else {
                for part in t.split(separator: ";") {
                    let p = String(part)
                    guard let c = Self.call(p, argumentsKey: "parameters") ?? Self.call(p, argumentsKey: "arguments") else { return nil }
                    calls.append(c)
                }
            }
            return calls.isEmpty ? nil : ("", calls)
        case .mistral, .granite:
            guard let m = text.range(of: marker) else { return nil }
            let content = String(text[..<m.lowerBound]).trimmingCharacters(in: .whitespacesAndNewlines)
            guard case let .array(items)? = try? JSONValue.parse(String(text[m.upperBound...]).trimmingCharacters(in: .whitespacesAndNewlines)),
                  !items.isEmpty else { return nil }
            var calls: [ToolCall] = []
            for item in items {
                guard let c = Self.call(item, argumentsKey: "arguments") else { return nil }
                calls.append(c)
            }
            return (content, calls)
        case .deepseek:
            guard let m = text.range(of: marker) else { return nil }
            let content = String(text[..<m.lowerBound]).trimmingCharacters(in: .whitespacesAndNewlines)
            var calls: [ToolCall] = []
            var rest = text[m.upperBound...]
            while let b = rest.range(of: "<｜tool▁call▁begin｜>") {
                let after = rest[b.upperBound...]
                guard let sep = after.range(of: "<｜tool▁sep｜>") else { return nil }
                let end = after.range(of: "<｜tool▁call▁end｜>")
                let body = end.map { after[sep.upperBound..<$0.lowerBound] } ?? after[sep.upperBound...]
                guard let nl = body.firstIndex(of: "\n") else { return nil }
                let name = String(body[..<nl]).trimmingCharacters(in: .whitespaces)
                var args = String(body[body.index(after: nl)...]).trimmingCharacters(in: .whitespacesAndNewlines)
                if args.hasPrefix("```json") { args = String(args.dropFirst(7)) }
                if args.hasSuffix("```") { args = String(args.dropLast(3)) }
                guard !name.isEmpty, case .object? = try? JSONValue.parse(args) else { return nil }
                calls.append(ToolCall(name: name, arguments: (try? JSONValue.parse(args))?.serialized() ?? args))
                rest = end.map { after[$0.upperBound...] } ?? ""
            }
            return calls.isEmpty ? nil : (content, calls)
        }
    }

    static func call(_ text: String, argumentsKey: String) -> ToolCall? {
        guard let v = try? JSONValue.parse(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return call(v, argumentsKey: argumentsKey)
    }

    static func call(_ v: JSONValue, argumentsKey: String) -> ToolCall? {
        guard case let .string(name)? = v["name"], !name.isEmpty else { return nil }
        switch v[argumentsKey] {
        case nil: return ToolCall(name: name, arguments: "{}")
        case let .string(s)?: return ToolCall(name: name, arguments: s)   // some models write the arguments as a string
        case let a?:
            guard case .object = a else { return nil }
            return ToolCall(name: name, arguments: a.serialized())
        }
    }

    /// A grammar whose texts are exactly one call in this format, of one of `tools` (name and
    /// parameters schema), its arguments valid against the tool's schema: `tool_choice`
    /// "required" or a named function. Throws `JSONSchemaGrammar.Unsupported` for a schema it
    /// cannot enforce.
    public func grammar(tools: [(name: String, parameters: JSONValue)]) throws -> String {
        var rules = JSONSchemaGrammar.Rules()
        var alts: [String] = []
        for (i, t) in tools.enumerated() {
            let args = try rules.add(schema: t.parameters, hint: "tool\(i)-args")
            let name = JSONSchemaGrammar.literal(JSONValue.string(t.name).compact)
            let key = self == .llama3 ? "parameters" : "arguments"
            switch self {
            case .deepseek:
                alts.append("\(JSONSchemaGrammar.literal("<｜tool▁call▁begin｜>function<｜tool▁sep｜>" + t.name + "\n```json\n")) \(args) \(JSONSchemaGrammar.literal("\n```<｜tool▁call▁end｜>"))")
            default:
                alts.append("\"{\\\"name\\\": \" \(name) \", \\\"\(key)\\\": \" \(args) \"}\"")
            }
        }
        let call = "(" + alts.joined(separator: " | ") + ")"
        let root: String
        switch self {
        case .hermes: root = "\"<tool_call>\\n\" \(call) \"\\n</tool_call>\""
        case .llama3: root = call
        case .mistral: root = "\"[TOOL_CALLS][\" \(call) \"]\""
        case .granite: root = "\"<|tool_call|>[\" \(call) \"]\""
        case .deepseek: root = "\(JSONSchemaGrammar.literal("<｜tool▁calls▁begin｜>")) \(call) \(JSONSchemaGrammar.literal("<｜tool▁calls▁end｜>"))"
        }
        return "root ::= \(root)\n" + rules.text
    }
}

/// The streamed side of tool calls: text is handed out as it comes until a call may be starting
/// (a marker, or a prefix of one at the end of the text so far), then held to the end, where the
/// held text is parsed: calls, or (when it holds no well-formed call) content after all.
public struct ToolCallStream: Sendable {
    public let format: ToolCallFormat
    /// text not handed out
    private var held = ""
    /// a marker was seen: everything from it on waits for the end
    private var capturing = false
    /// nothing but spaces handed out so far (llama3's calls start the answer)
    private var atStart = true
    private var content = ""

    public init(format: ToolCallFormat) { self.format = format }

    /// Adds text; returns what can be handed out as content now.
    public mutating func push(_ piece: String) -> String {
        if capturing { held += piece; return "" }
        held += piece
        if !format.anywhere {
            // llama3: a call is the whole answer: decide on the first non-space characters
            guard atStart else { let out = held; held = ""; content += out; return out }
            let t = held.drop { $0.isWhitespace }
            if t.isEmpty { return "" }
            if format.markers.contains(where: { $0.hasPrefix(String(t.prefix($0.count))) && t.count < $0.count }) { return "" }
            if format.markers.contains(where: { t.hasPrefix($0) }) { capturing = true; return "" }
            atStart = false
            let out = held; held = ""; content += out
            return out
        }
        if let r = held.range(of: format.marker) {
            let out = String(held[..<r.lowerBound])
            held = String(held[r.lowerBound...])
            capturing = true
            content += out
            return out
        }
        // keep the longest suffix that is a proper prefix of the marker
        let m = Array(format.marker), h = Array(held)
        var keep = min(m.count - 1, h.count)
        while keep > 0 && !h[(h.count - keep)...].elementsEqual(m[..<keep]) { keep -= 1 }
        let out = String(h[..<(h.count - keep)])
        held = String(h[(h.count - keep)...])
        content += out
        return out
    }

    /// At the end: the rest of the content (text held that is no call) and the calls.
    public mutating func finish() -> (content: String, calls: [ToolCall]) {
        defer { held = "" }
        if capturing, let parsed = format.parse(held) {
            return (parsed.content, parsed.calls)
        }
        return (held, [])
    }
}
