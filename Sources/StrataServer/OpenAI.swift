import Foundation
import Strata

/// An OpenAI-style error answer: `{"error": {"message", "type", "param", "code"}}` with its HTTP status.
public struct APIError: Error, CustomStringConvertible, Sendable {
    public let status: Int
    public let message: String
    public let type: String
    public let param: String?
    public let code: String?

    public init(_ status: Int, _ message: String, type: String = "invalid_request_error", param: String? = nil, code: String? = nil) {
        self.status = status; self.message = message; self.type = type; self.param = param; self.code = code
    }

    public var description: String { "\(status): \(message)" }

    public var json: JSONValue {
        .object([("error", .object([("message", .string(message)), ("type", .string(type)),
                                    ("param", param.map { .string($0) } ?? .null), ("code", code.map { .string($0) } ?? .null)]))])
    }

    static func field(_ name: String, _ reason: String) -> APIError { APIError(400, "'\(name)': \(reason)", param: name) }
}

/// The fields of a request object, read with their types checked (errors name the field).
struct Fields {
    let pairs: [(String, JSONValue)]
    init(_ v: JSONValue) throws {
        guard case let .object(p) = v else { throw APIError(400, "the request body must be a JSON object, got \(v.typeName)") }
        pairs = p
    }
    /// The value of `key`; JSON null counts as absent.
    func get(_ key: String) -> JSONValue? {
        guard let v = pairs.last(where: { $0.0 == key })?.1, !v.isNull else { return nil }
        return v
    }
    func string(_ k: String) throws -> String? {
        guard let v = get(k) else { return nil }
        guard case let .string(s) = v else { throw APIError.field(k, "expected a string, got \(v.typeName)") }
        return s
    }
    func bool(_ k: String) throws -> Bool? {
        guard let v = get(k) else { return nil }
        guard case let .bool(b) = v else { throw APIError.field(k, "expected a boolean, got \(v.typeName)") }
        return b
    }
    func int(_ k: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let v = get(k) else { return nil }
        let i: Int
        switch v {
        case let .int(x): i = x
        case let .double(d) where d.rounded() == d && abs(d) < 9e15: i = Int(d)
        default: throw APIError.field(k, "expected an integer, got \(v.typeName)")
        }
        guard range.contains(i) else { throw APIError.field(k, "must be in \(range.lowerBound)...\(range.upperBound), got \(i)") }
        return i
    }
    /// Throws a 400 naming the first key not in `known` (no field is ignored in silence).
    func only(_ known: Set<String>) throws {
        if let k = pairs.first(where: { !known.contains($0.0) })?.0 {
            throw APIError.field(k, "unknown field (this route reads \(known.sorted().joined(separator: ", ")))")
        }
    }
    func number(_ k: String, _ range: ClosedRange<Double>) throws -> Double? {
        guard let v = get(k) else { return nil }
        let d: Double
        switch v {
        case let .int(x): d = Double(x)
        case let .double(x): d = x
        default: throw APIError.field(k, "expected a number, got \(v.typeName)")
        }
        guard d.isFinite, range.contains(d) else { throw APIError.field(k, "must be in \(range.lowerBound)...\(range.upperBound), got \(d)") }
        return d
    }
}

/// One parsed `/v1/completions` or `/v1/chat/completions` request.
public struct CompletionJob: Sendable {
    public var chat: Bool
    public var model: String
    public var promptIDs: [Int]
    public var parameters: SamplingParameters
    public var n: Int
    public var stream: Bool
    public var includeUsage: Bool
    /// chat: logprobs requested (top n in parameters.logprobs); completions: the same
    public var logprobs: Bool
    public var created: Int
    public var id: String
    /// The tool-call format parsed out of the answer (tools offered, tool_choice not "none").
    public var toolFormat: ToolCallFormat? = nil
    /// completions' `echo`: the prompt's text (and with logprobs, its tokens' log-probabilities) first
    public var echo: Bool = false
    /// the prompt's text as the request gave it (for echo)
    public var promptText: String = ""

    var request: GenerationRequest {
        GenerationRequest(prompt: promptIDs, parameters: parameters, n: n, promptLogprobs: echo && logprobs ? parameters.logprobs ?? 0 : nil)
    }
}

/// What the server serves: the model's name, tokenizer, chat format and sampling defaults.
public struct ServedModel: Sendable {
    public let id: String
    public let tokenizer: Tokenizer
    public let chat: ChatFormat?
    public let defaults: SamplingParameters
    public let maxContext: Int
    public let created: Int
    /// generation_config.json's `max_new_tokens`: a request's max_tokens when it sets none (as vLLM)
    public let defaultMaxTokens: Int?
    /// The vocabulary and grammars of structured output (`response_format`, `grammar`).
    public let grammars: GrammarVocabulary
    /// How the chat template's model writes tool calls (nil: no format Strata knows).
    public let toolFormat: ToolCallFormat?
    /// How /v1/embeddings pools hidden states, and their width.
    public let pooling: EmbeddingPooling
    public let hiddenSize: Int
    /// Inputs one embeddings request may hold (OpenAI's limit).
    public static let maxEmbeddingInputs = 2048

    /// Messages one chat request may hold (400 beyond).
    public static let maxMessages = 4096
    /// Bytes of one stop string (400 beyond): generated text is held back that long.
    public static let maxStopBytes = 4096

    public init(id: String, tokenizer: Tokenizer, chat: ChatFormat?, defaults: SamplingParameters, maxContext: Int, defaultMaxTokens: Int? = nil,
                eos: Set<Int> = [], pooling: EmbeddingPooling = .decoderDefault, hiddenSize: Int = 0) {
        self.pooling = pooling; self.hiddenSize = hiddenSize
        self.id = id; self.tokenizer = tokenizer; self.chat = chat; self.defaults = defaults; self.maxContext = maxContext
        self.defaultMaxTokens = defaultMaxTokens
        grammars = GrammarVocabulary(tokenizer: tokenizer, eos: eos)
        toolFormat = chat.flatMap { ToolCallFormat.detect(template: $0.template.source) }
        created = Int(Date().timeIntervalSince1970)
    }

    /// Parses a request body (`chat`: /v1/chat/completions). Throws `APIError` (400 naming the
    /// field, 404 for another model, 400 `context_length_exceeded`).
    public func parse(_ body: JSONValue, chat: Bool) throws -> CompletionJob {
        let f = try Fields(body)
        try Self.checkFields(f, chat: chat)
        let model = try f.string("model") ?? id
        if model != id { throw APIError(404, "The model '\(model)' does not exist (this server serves '\(id)').", param: "model", code: "model_not_found") }
        var prompt: [Int]
        var toolFormat: ToolCallFormat? = nil
        var forcedGrammar: String? = nil
        if chat {
            guard let m = f.get("messages") else { throw APIError.field("messages", "required") }
            guard case let .array(list) = m, !list.isEmpty else { throw APIError.field("messages", "expected a non-empty array, got \(m.typeName)") }
            if list.count > Self.maxMessages { throw APIError.field("messages", "at most \(Self.maxMessages) messages per request, got \(list.count)") }
            var messages: [JSONValue] = []
            for (i, msg) in list.enumerated() {
                let mf: Fields
                do { mf = try Fields(msg) } catch { throw APIError.field("messages[\(i)]", "expected an object, got \(msg.typeName)") }
                guard let role = try? mf.string("role") else { throw APIError.field("messages[\(i)].role", "required, a string") }
                guard ["system", "user", "assistant", "tool", "developer"].contains(role) else {
                    throw APIError.field("messages[\(i)].role", "must be system, user, assistant, tool or developer, got '\(role)'")
                }
                var pairs = mf.pairs
                if let idx = pairs.lastIndex(where: { $0.0 == "content" }) {
                    switch pairs[idx].1 {
                    case .string, .null: break
                    case let .array(parts):
                        // text parts become one string, as vLLM gives templates that expect strings
                        var texts: [String] = []
                        for (j, part) in parts.enumerated() {
                            guard part["type"]?.stringValue == "text", let t = part["text"]?.stringValue else {
                                throw APIError.field("messages[\(i)].content[\(j)]", "only {\"type\": \"text\", \"text\": ...} parts are supported")
                            }
                            texts.append(t)
                        }
                        pairs[idx].1 = .string(texts.joined(separator: "\n"))
                    default: throw APIError.field("messages[\(i)].content", "expected a string or an array of parts, got \(pairs[idx].1.typeName)")
                    }
                } else if role != "assistant" {
                    throw APIError.field("messages[\(i)].content", "required")
                }
                if let idx = pairs.lastIndex(where: { $0.0 == "tool_calls" }) {
                    pairs[idx].1 = try Self.templateToolCalls(pairs[idx].1, field: "messages[\(i)].tool_calls")
                }
                messages.append(.object(pairs))
            }
            guard let chatFormat = self.chat else {
                throw APIError(400, "the model '\(id)' has no chat template (tokenizer_config.json chat_template or chat_template.jinja); use /v1/completions")
            }
            let (tools, forced) = try toolSetup(f)
            if tools != nil { toolFormat = self.toolFormat }
            if let forced {
                guard let format = self.toolFormat else {
                    throw APIError.field("tool_choice", "the model's chat template writes tool calls in no format this server knows (docs/serving.md lists them); only \"auto\" and \"none\" can be honoured")
                }
                if f.get("response_format") != nil || f.get("grammar") != nil {
                    throw APIError.field("tool_choice", "a forced tool call and 'response_format'/'grammar' cannot both constrain the answer")
                }
                do {
                    forcedGrammar = try format.grammar(tools: forced)
                } catch let e as JSONSchemaGrammar.Unsupported {
                    throw APIError.field("tools", "a tool's parameters cannot be enforced for tool_choice: \(e)")
                }
            }
            var extra: [String: JSONValue] = [:]
            if let k = f.get("chat_template_kwargs") {
                guard case let .object(kv) = k else { throw APIError.field("chat_template_kwargs", "expected an object") }
                for (a, b) in kv { extra[a] = b }
            }
            let text: String
            do {
                text = try chatFormat.render(messages: .array(messages), tools: tools, addGenerationPrompt: true, extra: extra)
            } catch let e as JinjaError {
                throw APIError(400, "the chat template refused the conversation: \(e)", param: "messages")
            }
            prompt = try tokenizer.encode(text, addSpecialTokens: false)
        } else {
            guard let p = f.get("prompt") else { throw APIError.field("prompt", "required") }
            switch p {
            case let .string(s): prompt = try tokenizer.encode(s)
            case let .array(items):
                if items.count == 1, case let .string(s) = items[0] { prompt = try tokenizer.encode(s) }
                else if items.count == 1, case let .array(ids) = items[0] { prompt = try Self.tokenIDs(ids, vocab: tokenizer.vocabSize) }
                else if items.allSatisfy({ if case .int = $0 { return true }; return false }) { prompt = try Self.tokenIDs(items, vocab: tokenizer.vocabSize) }
                else { throw APIError.field("prompt", "one prompt per request: a string, or an array of token ids") }
            default: throw APIError.field("prompt", "expected a string or an array of token ids, got \(p.typeName)")
            }
        }
        if prompt.isEmpty { throw APIError.field(chat ? "messages" : "prompt", "the prompt is empty") }
        if prompt.count >= maxContext {
            throw APIError(400, "This model's maximum context length is \(maxContext) tokens. However, your \(chat ? "messages" : "prompt") resulted in \(prompt.count) tokens. Please reduce the length.",
                           param: chat ? "messages" : "prompt", code: "context_length_exceeded")
        }
        var p = defaults
        let room = maxContext - prompt.count
        // echo scores a prompt: max_tokens 0 asks for its log-probabilities and nothing more
        let echo = try !chat && (f.bool("echo") ?? false)
        let asked = try f.int("max_completion_tokens", 1...Int(Int32.max)) ?? f.int("max_tokens", (echo ? 0 : 1)...Int(Int32.max))
        if let asked, asked > room {
            throw APIError(400, "This model's maximum context length is \(maxContext) tokens. However, you requested \(prompt.count + asked) tokens (\(prompt.count) in the \(chat ? "messages" : "prompt"), \(asked) in the completion). Please reduce the length.",
                           param: "max_tokens", code: "context_length_exceeded")
        }
        p.maxTokens = asked ?? min(defaultMaxTokens ?? (chat ? room : 16), room)
        if let t = try f.number("temperature", 0...100) { p.temperature = Float(t) }
        if let t = try f.number("top_p", 1e-9...1) { p.topP = Float(t) }
        if let k = try f.int("top_k", -1...Int(Int32.max)) { p.topK = max(0, k) }
        if let m = try f.number("min_p", 0...1) { p.minP = Float(m) }
        if let r = try f.number("repetition_penalty", 1e-6...100) { p.repetitionPenalty = Float(r) }
        if let x = try f.number("presence_penalty", -2...2) { p.presencePenalty = Float(x) }
        if let x = try f.number("frequency_penalty", -2...2) { p.frequencyPenalty = Float(x) }
        if let s = f.get("seed") {
            guard case let .int(seed) = s else { throw APIError.field("seed", "expected an integer, got \(s.typeName)") }
            p.seed = UInt64(bitPattern: Int64(seed))
        }
        if let s = f.get("stop") {
            switch s {
            case let .string(x): p.stopStrings = [x]
            case let .array(xs):
                guard xs.count <= 16 else { throw APIError.field("stop", "at most 16 stop strings") }
                p.stopStrings = try xs.map { x in
                    guard case let .string(v) = x else { throw APIError.field("stop", "expected strings, got \(x.typeName)") }
                    return v
                }
            default: throw APIError.field("stop", "expected a string or an array of strings, got \(s.typeName)")
            }
            p.stopStrings = p.stopStrings.filter { !$0.isEmpty }
            if let long = p.stopStrings.first(where: { $0.utf8.count > Self.maxStopBytes }) {
                throw APIError.field("stop", "a stop string is at most \(Self.maxStopBytes) bytes, got \(long.utf8.count)")
            }
        }
        if let ignore = try f.bool("ignore_eos") { p.stopAtEOS = !ignore }
        if let b = f.get("logit_bias") {
            guard case let .object(kv) = b else { throw APIError.field("logit_bias", "expected an object of token id -> bias, got \(b.typeName)") }
            var bias: [Int: Float] = [:]
            for (k, v) in kv {
                guard let t = Int(k), t >= 0, t < tokenizer.vocabSize else {
                    throw APIError.field("logit_bias", "keys must be token ids in 0..<\(tokenizer.vocabSize), got '\(k)'")
                }
                let x: Double
                switch v {
                case let .int(i): x = Double(i)
                case let .double(d): x = d
                default: throw APIError.field("logit_bias", "token \(k): expected a number, got \(v.typeName)")
                }
                guard x >= -100 && x <= 100 else { throw APIError.field("logit_bias", "token \(k): bias must be in [-100, 100], got \(x)") }
                bias[t] = Float(x)
            }
            p.logitBias = bias
        }
        p.constraint = try constraint(f)
        if let g = forcedGrammar { p.constraint = try grammars.constraint(gbnf: g, kind: "tool_choice") }
        var logprobs = false
        if chat {
            logprobs = try f.bool("logprobs") ?? false
            let top = try f.int("top_logprobs", 0...20)
            if top != nil && !logprobs { throw APIError.field("top_logprobs", "needs 'logprobs': true") }
            p.logprobs = logprobs ? (top ?? 0) : nil
        } else if let n = try f.int("logprobs", 0...20) {
            logprobs = true
            p.logprobs = n
        }
        let n = try f.int("n", 1...16) ?? 1
        let stream = try f.bool("stream") ?? false
        if echo && stream { throw APIError.field("echo", "not supported with 'stream' yet (send it without streaming)") }
        var includeUsage = false
        if let so = f.get("stream_options") {
            guard stream else { throw APIError.field("stream_options", "only allowed when 'stream' is true") }
            includeUsage = try Fields(so).bool("include_usage") ?? false
        }
        do { try p.validate() } catch let SamplingError.invalid(field, reason) { throw APIError.field(field, reason) }
        let rid = (chat ? "chatcmpl-" : "cmpl-") + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        return CompletionJob(chat: chat, model: id, promptIDs: prompt, parameters: p, n: n, stream: stream, includeUsage: includeUsage,
                             logprobs: logprobs, created: Int(Date().timeIntervalSince1970), id: rid, toolFormat: toolFormat,
                             echo: echo, promptText: echo ? promptText(f, ids: prompt) : "")
    }

    /// A parsed `/v1/embeddings` request.
    public struct EmbeddingJob: Sendable {
        public var inputs: [[Int]]
        public var base64: Bool
    }

    /// Parses `/v1/embeddings`: `input` a string, an array of strings, an array of token ids or an
    /// array of such arrays (at most 2048, each within the context); `encoding_format` float or
    /// base64; `dimensions` only the model's own width (the model is not trained to be cut).
    public func parseEmbeddings(_ body: JSONValue) throws -> EmbeddingJob {
        let f = try Fields(body)
        try f.only(["model", "input", "encoding_format", "dimensions", "user"])
        let model = try f.string("model") ?? id
        if model != id { throw APIError(404, "The model '\(model)' does not exist (this server serves '\(id)').", param: "model", code: "model_not_found") }
        guard let input = f.get("input") else { throw APIError.field("input", "required") }
        func encode(_ s: String) throws -> [Int] {
            guard !s.isEmpty else { throw APIError.field("input", "an empty string has no embedding") }
            return try tokenizer.encode(s)
        }
        var inputs: [[Int]]
        switch input {
        case let .string(s): inputs = [try encode(s)]
        case let .array(items) where items.isEmpty: throw APIError.field("input", "an empty array")
        case let .array(items):
            if items.allSatisfy({ if case .int = $0 { return true }; return false }) {
                inputs = [try Self.tokenIDs(items, vocab: tokenizer.vocabSize, field: "input")]
            } else {
                inputs = try items.map { item in
                    switch item {
                    case let .string(s): return try encode(s)
                    case let .array(ids) where !ids.isEmpty: return try Self.tokenIDs(ids, vocab: tokenizer.vocabSize, field: "input")
                    default: throw APIError.field("input", "expected strings or arrays of token ids, got \(item.typeName)")
                    }
                }
            }
        default: throw APIError.field("input", "expected a string or an array, got \(input.typeName)")
        }
        if inputs.count > Self.maxEmbeddingInputs { throw APIError.field("input", "at most \(Self.maxEmbeddingInputs) inputs per request, got \(inputs.count)") }
        if let long = inputs.first(where: { $0.count > maxContext }) {
            throw APIError(400, "This model's maximum context length is \(maxContext) tokens. However, an input resulted in \(long.count) tokens.",
                           param: "input", code: "context_length_exceeded")
        }
        let format = try f.string("encoding_format") ?? "float"
        guard format == "float" || format == "base64" else { throw APIError.field("encoding_format", "must be float or base64, got '\(format)'") }
        if let d = try f.int("dimensions", 1...Int(Int32.max)), d != hiddenSize {
            throw APIError.field("dimensions", "this model's embeddings have \(hiddenSize) dimensions and cannot be shortened, got \(d)")
        }
        return EmbeddingJob(inputs: inputs, base64: format == "base64")
    }

    /// OpenAI's embeddings list.
    func embeddingsResponse(_ job: EmbeddingJob, _ vectors: [[Float]]) -> JSONValue {
        let data: [JSONValue] = vectors.enumerated().map { i, v in
            let e: JSONValue
            if job.base64 {
                var bytes = [UInt8](); bytes.reserveCapacity(v.count * 4)
                for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { bytes += $0 } }
                e = .string(Data(bytes).base64EncodedString())
            } else {
                e = .array(v.map { .double(Double($0)) })
            }
            return .object([("object", "embedding"), ("index", .int(i)), ("embedding", e)])
        }
        let tokens = job.inputs.reduce(0) { $0 + $1.count }
        return .object([("object", "list"), ("data", .array(data)), ("model", .string(id)),
                        ("usage", .object([("prompt_tokens", .int(tokens)), ("total_tokens", .int(tokens))]))])
    }

    /// The prompt's text for `echo`: the string given, or the ids decoded.
    func promptText(_ f: Fields, ids: [Int]) -> String {
        switch f.get("prompt") {
        case let .string(s)?: return s
        case let .array(items)? where items.count == 1: if case let .string(s) = items[0] { return s }
        default: break
        }
        return (try? tokenizer.decode(ids)) ?? ""
    }

    /// The tools offered to the template (nil: none, or tool_choice "none") and, for tool_choice
    /// "required" or a named function, the tools a forced call chooses among (name, parameters).
    func toolSetup(_ f: Fields) throws -> (JSONValue?, [(name: String, parameters: JSONValue)]?) {
        var list: [(name: String, parameters: JSONValue)] = []
        var tools: JSONValue? = nil
        if let t = f.get("tools") {
            guard case let .array(items) = t else { throw APIError.field("tools", "expected an array, got \(t.typeName)") }
            for (i, item) in items.enumerated() {
                let tf: Fields
                do { tf = try Fields(item) } catch { throw APIError.field("tools[\(i)]", "expected an object, got \(item.typeName)") }
                guard try tf.string("type") == "function", let fn = tf.get("function") else {
                    throw APIError.field("tools[\(i)]", "expected {\"type\": \"function\", \"function\": {...}}")
                }
                guard case let .string(name)? = fn["name"], !name.isEmpty else { throw APIError.field("tools[\(i)].function.name", "required, a string") }
                if list.contains(where: { $0.name == name }) { throw APIError.field("tools[\(i)].function.name", "'\(name)' is offered twice") }
                let params = fn["parameters"] ?? .object([("type", "object"), ("properties", .object([]))])
                guard case .object = params else { throw APIError.field("tools[\(i)].function.parameters", "expected a JSON Schema object") }
                list.append((name, params))
            }
            tools = t
        }
        guard let c = f.get("tool_choice") else { return (tools, nil) }
        switch c {
        case .string("none"): return (nil, nil)
        case .string("auto"): return (tools, nil)
        case .string("required"):
            guard !list.isEmpty else { throw APIError.field("tool_choice", "\"required\" needs 'tools'") }
            return (tools, list)
        case .object:
            guard c["type"]?.stringValue == "function", case let .string(name)? = c["function"]?["name"] else {
                throw APIError.field("tool_choice", "expected {\"type\": \"function\", \"function\": {\"name\": ...}}")
            }
            guard let tool = list.first(where: { $0.name == name }) else { throw APIError.field("tool_choice", "names '\(name)', which is not among 'tools'") }
            return (tools, [tool])
        default:
            throw APIError.field("tool_choice", "must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}")
        }
    }

    /// An assistant message's `tool_calls` as templates expect them: each `function.arguments`
    /// string read as the JSON object it holds (as vLLM gives templates), other fields as sent.
    static func templateToolCalls(_ v: JSONValue, field: String) throws -> JSONValue {
        guard case let .array(calls) = v else { throw APIError.field(field, "expected an array, got \(v.typeName)") }
        return .array(try calls.enumerated().map { i, call in
            guard case var .object(pairs) = call, let fi = pairs.firstIndex(where: { $0.0 == "function" }),
                  case var .object(fn) = pairs[fi].1 else { throw APIError.field("\(field)[\(i)].function", "required, an object") }
            if let ai = fn.firstIndex(where: { $0.0 == "arguments" }), case let .string(text) = fn[ai].1 {
                guard let parsed = try? JSONValue.parse(text) else { throw APIError.field("\(field)[\(i)].function.arguments", "not JSON: \(text.prefix(80))") }
                fn[ai].1 = parsed
            }
            pairs[fi].1 = .object(fn)
            return .object(pairs)
        })
    }

    /// The grammar a request's output must follow: `response_format` `json_object` (any JSON
    /// object) or `json_schema` (its schema compiled by `JSONSchemaGrammar`), or llama-server's
    /// `grammar` (GBNF text). A schema or grammar that cannot be enforced is a 400 naming what.
    func constraint(_ f: Fields) throws -> TokenConstraint? {
        var gbnf: String? = nil, kind = "", field = ""
        if let rf = f.get("response_format") {
            let r: Fields
            do { r = try Fields(rf) } catch { throw APIError.field("response_format", "expected an object, got \(rf.typeName)") }
            switch try r.string("type") {
            case "text"?:
                try r.only(["type"])
            case "json_object"?:
                try r.only(["type"])
                gbnf = JSONSchemaGrammar.objectGrammar; kind = "json_object"; field = "response_format"
            case "json_schema"?:
                try r.only(["type", "json_schema"])
                guard let js = r.get("json_schema") else { throw APIError.field("response_format.json_schema", "required with type json_schema") }
                let j: Fields
                do { j = try Fields(js) } catch { throw APIError.field("response_format.json_schema", "expected an object, got \(js.typeName)") }
                do { try j.only(["name", "schema", "strict", "description"]) } catch let e as APIError {
                    throw APIError(400, "'response_format.json_schema': " + e.message, param: "response_format.json_schema")
                }
                _ = try j.string("name"); _ = try j.bool("strict"); _ = try j.string("description")
                guard let schema = j.get("schema") else { throw APIError.field("response_format.json_schema.schema", "required: the JSON Schema the answer must follow") }
                do { gbnf = try JSONSchemaGrammar.gbnf(schema: schema) } catch let e as JSONSchemaGrammar.Unsupported {
                    throw APIError.field("response_format.json_schema.schema", "cannot be enforced: \(e)")
                }
                kind = "json_schema"; field = "response_format.json_schema.schema"
            case let t:
                throw APIError.field("response_format.type", "must be text, json_object or json_schema, got \(t.map { "'\($0)'" } ?? "nothing")")
            }
        }
        if let g = try f.string("grammar") {
            if gbnf != nil { throw APIError.field("grammar", "give either 'grammar' or a JSON 'response_format', not both") }
            gbnf = g; kind = "grammar"; field = "grammar"
        }
        guard let gbnf else { return nil }
        do { return try grammars.constraint(gbnf: gbnf, kind: kind) } catch let e as Grammar.ParseError {
            throw APIError.field(field, "\(e)")
        }
    }

    /// The request fields `parse` honours.
    static let readFields: Set<String> = [
        "model", "messages", "prompt", "tools", "tool_choice", "chat_template_kwargs", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty", "seed", "stop",
        "ignore_eos", "logprobs", "top_logprobs", "n", "stream", "stream_options", "logit_bias", "response_format", "grammar", "echo",
    ]
    /// OpenAI's fields that change nothing a server without accounts computes, accepted as given
    /// (docs/serving.md lists them).
    static let harmlessFields: Set<String> = ["user", "metadata", "service_tier", "safety_identifier", "prompt_cache_key", "parallel_tool_calls"]

    /// Refuses (400, naming it) a field the server would otherwise ignore: an OpenAI field it does
    /// not implement, a value of one it implements only in part, any other unknown field. No field
    /// of a request is ignored in silence.
    static func checkFields(_ f: Fields, chat: Bool) throws {
        for (k, v) in f.pairs where !readFields.contains(k) && !harmlessFields.contains(k) {
            if v.isNull { continue }
            switch (k, v) {
            case ("store", .bool(false)), ("best_of", .int(1)), ("suffix", .string("")):
                continue
            case ("modalities", .array(let m)) where m.allSatisfy({ $0.stringValue == "text" }):
                continue
            case ("best_of", _), ("suffix", _), ("functions", _), ("function_call", _), ("audio", _),
                 ("modalities", _), ("prediction", _), ("web_search_options", _), ("reasoning_effort", _), ("verbosity", _), ("store", _):
                throw APIError.field(k, "not supported by this server yet (docs/serving.md lists what each field does)")
            default:
                throw APIError.field(k, "unknown field (docs/serving.md lists the fields this server reads)")
            }
        }
        if !chat, let k = ["messages", "tools", "tool_choice", "chat_template_kwargs", "max_completion_tokens", "top_logprobs"].first(where: { f.get($0) != nil }) {
            throw APIError.field(k, "a chat field; /v1/completions reads 'prompt'")
        }
        if chat, let k = ["prompt", "echo"].first(where: { f.get($0) != nil }) { throw APIError.field(k, "a completions field; /v1/chat/completions reads 'messages'") }
    }

    static func tokenIDs(_ items: [JSONValue], vocab: Int, field: String = "prompt") throws -> [Int] {
        try items.map { v in
            guard case let .int(i) = v, i >= 0, i < vocab else { throw APIError.field(field, "token ids must be integers in 0..<\(vocab), got \(v.compact)") }
            return i
        }
    }

    // MARK: responses

    public var modelsList: JSONValue { .object([("object", "list"), ("data", .array([modelObject]))]) }

    var modelObject: JSONValue {
        .object([("id", .string(id)), ("object", "model"), ("created", .int(created)), ("owned_by", "strata"), ("max_model_len", .int(maxContext))])
    }

    /// `GET /v1/models/{id}`: the model object, or a 404 naming the id (OpenAI's `model_not_found`).
    public func model(_ asked: String) throws -> JSONValue {
        guard asked == id else { throw APIError(404, "The model '\(asked)' does not exist (this server serves '\(id)')", code: "model_not_found") }
        return modelObject
    }

    /// `POST /tokenize` (llama-server's): `{"content": text, "add_special": bool}` (default false:
    /// the text's own tokens), `"with_pieces": true` for each token's text beside its id.
    public func tokenize(_ body: JSONValue) throws -> JSONValue {
        let f = try Fields(body)
        try f.only(["content", "add_special", "with_pieces"])
        guard let text = try f.string("content") else { throw APIError.field("content", "required: the text to tokenize") }
        let ids = try tokenizer.encode(text, addSpecialTokens: f.bool("add_special") ?? false)
        if try f.bool("with_pieces") ?? false {
            return .object([("tokens", .array(ids.map { .object([("id", .int($0)), ("piece", .string(tokenText($0)))]) }))])
        }
        return .object([("tokens", .array(ids.map { .int($0) }))])
    }

    /// `POST /detokenize` (llama-server's): `{"tokens": [ids]}` -> `{"content": text}`; an id
    /// outside the vocabulary is a 400 naming it.
    public func detokenize(_ body: JSONValue) throws -> JSONValue {
        let f = try Fields(body)
        try f.only(["tokens"])
        guard let v = f.get("tokens"), case let .array(items) = v else { throw APIError.field("tokens", "required: an array of token ids") }
        let ids = try Self.tokenIDs(items, vocab: tokenizer.vocabSize, field: "tokens")
        return .object([("content", .string(try tokenizer.decode(ids)))])
    }

    static func finishReason(_ r: StopReason) -> JSONValue {
        switch r {
        case .eos, .stopString: return "stop"
        case .maxTokens, .contextFull: return "length"
        case .cancelled: return "abort"
        case .error: return "error"
        }
    }

    func tokenText(_ id: Int) -> String { (try? tokenizer.decode([id])) ?? "" }

    func logprobEntry(_ t: GeneratedToken, chat: Bool) -> JSONValue {
        let text = tokenText(t.id)
        let bytes = JSONValue.array(Array(text.utf8).map { .int(Int($0)) })
        let top = JSONValue.array(t.topLogprobs.map { x in
            let s = tokenText(x.id)
            return .object([("token", .string(s)), ("logprob", .double(Double(x.logprob))), ("bytes", .array(Array(s.utf8).map { .int(Int($0)) }))])
        })
        return .object([("token", .string(text)), ("logprob", .double(Double(t.logprob ?? 0))), ("bytes", bytes), ("top_logprobs", top)])
    }

    /// Completions' logprobs with `echo`: the prompt's tokens (the first with null log-probability,
    /// as OpenAI's legacy API and vLLM answer), then the generated ones.
    func echoLogprobs(_ job: CompletionJob, prompt: [GeneratedToken], _ toks: [GeneratedToken]) -> JSONValue {
        var tokens: [JSONValue] = [], lps: [JSONValue] = [], tops: [JSONValue] = [], offsets: [JSONValue] = []
        var offset = 0
        func add(_ id: Int, _ lp: Float?, _ top: [TokenLogprob]?) {
            let t = tokenText(id)
            tokens.append(.string(t)); offsets.append(.int(offset)); offset += t.unicodeScalars.count
            lps.append(lp.map { .double(Double($0)) } ?? .null)
            tops.append(top.map { ts in .object(ts.map { (tokenText($0.id), .double(Double($0.logprob))) }) } ?? .null)
        }
        if let first = job.promptIDs.first { add(first, nil, nil) }
        for t in prompt { add(t.id, t.logprob, t.topLogprobs) }
        for t in toks { add(t.id, t.logprob ?? 0, t.topLogprobs) }
        return .object([("tokens", .array(tokens)), ("token_logprobs", .array(lps)), ("top_logprobs", .array(tops)), ("text_offset", .array(offsets))])
    }

    /// Completions' logprobs object: tokens, token_logprobs, top_logprobs (dicts), text_offset.
    func completionLogprobs(_ toks: [GeneratedToken]) -> JSONValue {
        var offset = 0
        var offsets: [JSONValue] = []
        for t in toks { offsets.append(.int(offset)); offset += tokenText(t.id).unicodeScalars.count }
        return .object([("tokens", .array(toks.map { .string(tokenText($0.id)) })),
                        ("token_logprobs", .array(toks.map { .double(Double($0.logprob ?? 0)) })),
                        ("top_logprobs", .array(toks.map { t in .object(t.topLogprobs.map { (tokenText($0.id), .double(Double($0.logprob))) }) })),
                        ("text_offset", .array(offsets))])
    }

    func usage(_ job: CompletionJob, completion: Int) -> JSONValue {
        .object([("prompt_tokens", .int(job.promptIDs.count)), ("completion_tokens", .int(completion)),
                 ("total_tokens", .int(job.promptIDs.count + completion))])
    }

    /// The whole (non-streamed) response.
    func response(_ job: CompletionJob, outputs: [RequestOutput], tokens: [Int: [GeneratedToken]]) -> JSONValue {
        let choices: [JSONValue] = outputs.map { o in
            let toks = (tokens[o.sample] ?? []).filter { $0.id >= 0 }
            var lp: JSONValue = .null
            if job.logprobs { lp = job.chat ? .object([("content", .array(toks.map { logprobEntry($0, chat: true) }))]) : completionLogprobs(toks) }
            if job.chat {
                if let format = job.toolFormat, let parsed = format.parse(toolText(o, format: format)) {
                    return .object([("index", .int(o.sample)),
                                    ("message", .object([("role", "assistant"), ("content", parsed.content.isEmpty ? .null : .string(parsed.content)),
                                                         ("tool_calls", toolCallsJSON(parsed.calls, indexed: false))])),
                                    ("logprobs", lp), ("finish_reason", "tool_calls")])
                }
                return .object([("index", .int(o.sample)), ("message", .object([("role", "assistant"), ("content", .string(o.text))])),
                                ("logprobs", lp), ("finish_reason", Self.finishReason(o.stopReason))])
            }
            if job.echo {
                // the prompt first: its text, and its tokens' log-probabilities (the first has none)
                if job.logprobs { lp = echoLogprobs(job, prompt: outputs.first?.promptLogprobs ?? [], toks) }
                return .object([("index", .int(o.sample)), ("text", .string(job.promptText + o.text)), ("logprobs", lp),
                                ("finish_reason", Self.finishReason(o.stopReason))])
            }
            return .object([("index", .int(o.sample)), ("text", .string(o.text)), ("logprobs", lp), ("finish_reason", Self.finishReason(o.stopReason))])
        }
        return .object([("id", .string(job.id)), ("object", .string(job.chat ? "chat.completion" : "text_completion")), ("created", .int(job.created)),
                        ("model", .string(job.model)), ("choices", .array(choices)),
                        ("usage", usage(job, completion: outputs.reduce(0) { $0 + $1.ids.count }))])
    }

    /// The answer's text as the tool-call parser reads it: with the format's marker when the
    /// tokenizer has it as a special token (the text handed out skips special tokens).
    func toolText(_ o: RequestOutput, format: ToolCallFormat) -> String {
        guard let m = tokenizer.id(of: format.marker), tokenizer.specialIDs.contains(m), o.ids.contains(m) else { return o.text }
        return (try? tokenizer.decode(o.ids.filter { !grammars.eos.contains($0) && (!tokenizer.specialIDs.contains($0) || $0 == m) })) ?? o.text
    }

    /// A streamed token's text for the tool-call stream: a special token that is the format's
    /// marker counts as its text.
    func toolPiece(_ t: GeneratedToken, format: ToolCallFormat) -> String {
        if t.id >= 0, tokenizer.specialIDs.contains(t.id), tokenizer.token(of: t.id) == format.marker { return format.marker }
        return t.text
    }

    /// OpenAI's `tool_calls` array (`indexed`: with each call's `index`, as stream deltas carry).
    func toolCallsJSON(_ calls: [ToolCall], indexed: Bool) -> JSONValue {
        .array(calls.enumerated().map { i, c in
            var pairs: [(String, JSONValue)] = indexed ? [("index", .int(i))] : []
            pairs += [("id", .string("call_" + String(UInt64.random(in: 0...UInt64.max), radix: 16))), ("type", "function"),
                      ("function", .object([("name", .string(c.name)), ("arguments", .string(c.arguments))]))]
            return .object(pairs)
        })
    }

    /// The last chunk of a streamed sample whose answer held tool calls.
    func toolCallChunk(_ job: CompletionJob, sample: Int, calls: [ToolCall]) -> JSONValue {
        let choice: JSONValue = .object([("index", .int(sample)), ("delta", .object([("tool_calls", toolCallsJSON(calls, indexed: true))])),
                                         ("logprobs", .null), ("finish_reason", "tool_calls")])
        return .object([("id", .string(job.id)), ("object", "chat.completion.chunk"), ("created", .int(job.created)),
                        ("model", .string(job.model)), ("choices", .array([choice]))])
    }

    /// One server-sent chunk of a streamed response.
    func chunk(_ job: CompletionJob, sample: Int, text: String?, role: Bool = false, token: GeneratedToken? = nil, finish: StopReason? = nil) -> JSONValue {
        var lp: JSONValue = .null
        if job.logprobs, let token, token.id >= 0 {
            lp = job.chat ? .object([("content", .array([logprobEntry(token, chat: true)]))]) : completionLogprobs([token])
        }
        let choice: JSONValue
        if job.chat {
            var delta: [(String, JSONValue)] = []
            if role { delta.append(("role", "assistant")) }
            if let text { delta.append(("content", .string(text))) }
            choice = .object([("index", .int(sample)), ("delta", .object(delta)), ("logprobs", lp), ("finish_reason", finish.map(Self.finishReason) ?? .null)])
        } else {
            choice = .object([("index", .int(sample)), ("text", .string(text ?? "")), ("logprobs", lp), ("finish_reason", finish.map(Self.finishReason) ?? .null)])
        }
        return .object([("id", .string(job.id)), ("object", .string(job.chat ? "chat.completion.chunk" : "text_completion")), ("created", .int(job.created)),
                        ("model", .string(job.model)), ("choices", .array([choice]))])
    }

    func usageChunk(_ job: CompletionJob, completion: Int) -> JSONValue {
        .object([("id", .string(job.id)), ("object", .string(job.chat ? "chat.completion.chunk" : "text_completion")), ("created", .int(job.created)),
                 ("model", .string(job.model)), ("choices", .array([])), ("usage", usage(job, completion: completion))])
    }
}
