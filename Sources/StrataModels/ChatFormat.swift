import Foundation
import StrataTensor
@_exported import StrataJinja

/// How an instruct model is prompted: its chat template and the special tokens the template
/// sees. From a folder: `chat_template.jinja` (transformers >= 4.49 writes it), else
/// tokenizer_config.json's `chat_template` (a string, or a list of named templates: "default" or
/// the first), with its `bos_token`/`eos_token`; from a GGUF: `tokenizer.chat_template` and the
/// text of the BOS/EOS ids.
public struct ChatFormat: Sendable {
    public let template: ChatTemplate
    /// bos_token, eos_token (and unk_token, pad_token where known), as strings.
    public let specialTokens: [String: String]
    /// Where the template came from (a path, or "FILE.gguf:tokenizer.chat_template").
    public let origin: String

    public init(template: ChatTemplate, specialTokens: [String: String], origin: String) {
        self.template = template; self.specialTokens = specialTokens; self.origin = origin
    }

    /// Compiles `source`; a syntax error names `origin` with the template's line and column.
    static func compile(_ source: String, origin: String, tokens: [String: String]) throws -> ChatFormat {
        do { return ChatFormat(template: try ChatTemplate(source), specialTokens: tokens, origin: origin) } catch let e as JinjaError {
            throw ChatFormatError.badTemplate(path: origin, e)
        }
    }

    /// The prompt of a conversation (`extra`: more variables, e.g. `enable_thinking`).
    public func render(messages: JSONValue, tools: JSONValue? = nil, addGenerationPrompt: Bool = true,
                       extra: [String: JSONValue] = [:]) throws -> String {
        try template.render(messages: messages, tools: tools, addGenerationPrompt: addGenerationPrompt, specialTokens: specialTokens, extra: extra)
    }
}

public enum ChatFormatError: Error, CustomStringConvertible, Sendable {
    case noTemplate(String)
    /// `--chat-template FILE` names no readable file
    case noTemplateFile(String)
    case badTemplate(path: String, JinjaError)
    case badConfig(path: String, field: String, reason: String)
    case unknownName(path: String, name: String, known: [String])

    public var description: String {
        switch self {
        case let .noTemplate(p): return "\(p) has no chat template (tokenizer_config.json chat_template, chat_template.jinja or a GGUF's tokenizer.chat_template; --chat-template FILE gives one)"
        case let .noTemplateFile(p): return "\(p): no such chat template file (--chat-template)"
        case let .badTemplate(p, e): return "\(p): \(e)"
        case let .badConfig(p, f, r): return "\(p): field \(f): \(r)"
        case let .unknownName(p, n, k): return "\(p): no chat template named '\(n)' (has: \(k.joined(separator: ", ")))"
        }
    }
}

extension ModelFolder {
    /// The model's chat format, or nil when it has no chat template. `name` picks one of a list
    /// of named templates (e.g. "tool_use"). Throws on a template that does not parse (with its
    /// line and column) or a malformed tokenizer_config.json.
    /// `templateFile`: a Jinja file used instead of the model's own template (`--chat-template`;
    /// what a model without one needs to chat), with the model's special tokens.
    public func chatFormat(name: String? = nil, templateFile: String? = nil) throws -> ChatFormat? {
        var tokens: [String: String] = [:]
        let ids = generationTokens
        if let t = tokenizer {
            if let b = ids.bos.first, let s = t.token(of: b) { tokens["bos_token"] = s }
            if let e = ids.eos.first, let s = t.token(of: e) { tokens["eos_token"] = s }
        }
        if let file = templateFile {
            guard let data = try FileIO.readSmallFile(file, limit: 16 << 20) else { throw ChatFormatError.noTemplateFile(file) }
            guard let source = String(data: data, encoding: .utf8) else {
                throw ChatFormatError.badConfig(path: file, field: "(file)", reason: "not UTF-8 text")
            }
            if gguf == nil, let found = try? ModelFolder.templateSource(directory: directory, name: nil) {
                for (k, v) in found.tokens where tokens[k] == nil { tokens[k] = v }
            }
            return try ChatFormat.compile(source, origin: file, tokens: tokens)
        }
        if let gguf {
            guard let source = tokenizer?.chatTemplate else { return nil }
            return try ChatFormat.compile(source, origin: gguf.path + ":tokenizer.chat_template", tokens: tokens)
        }
        guard let found = try ModelFolder.templateSource(directory: directory, name: name) else { return nil }
        for (k, v) in found.tokens { tokens[k] = v }
        return try ChatFormat.compile(found.source, origin: found.origin, tokens: tokens)
    }

    /// A folder's chat template source and where it came from (`chat_template.jinja`, else
    /// tokenizer_config.json's `chat_template`, a string or a named list), with the special
    /// tokens tokenizer_config.json names; nil when it has none. Also what `strata quantize`
    /// writes into a GGUF.
    static func templateSource(directory: String, name: String?) throws -> (source: String, origin: String, tokens: [String: String])? {
        var tokens: [String: String] = [:]
        let configPath = (directory as NSString).appendingPathComponent("tokenizer_config.json")
        var source: String? = nil
        var origin = configPath
        if let data = try FileIO.readSmallFile(configPath) {
            let cfg: JSONValue
            do { cfg = try JSONValue.parse(data) } catch { throw ChatFormatError.badConfig(path: configPath, field: "(document)", reason: "\(error)") }
            for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
                switch cfg[key] {
                case let .string(s)?: tokens[key] = s
                case let .object(o)?: if case let .string(s)? = o.last(where: { $0.0 == "content" })?.1 { tokens[key] = s }
                default: break
                }
            }
            switch cfg["chat_template"] {
            case let .string(s)?: source = s
            case let .array(list)?:
                var named: [(String, String)] = []
                for item in list {
                    guard case let .string(n)? = item["name"], case let .string(t)? = item["template"] else {
                        throw ChatFormatError.badConfig(path: configPath, field: "chat_template", reason: "a list entry without a string name and template")
                    }
                    named.append((n, t))
                }
                let want = name ?? "default"
                if let hit = named.first(where: { $0.0 == want }) { source = hit.1 }
                else if name != nil { throw ChatFormatError.unknownName(path: configPath, name: want, known: named.map(\.0)) }
                else { source = named.first?.1 }
            case nil, .null?: break
            case let other?: throw ChatFormatError.badConfig(path: configPath, field: "chat_template", reason: "expected a string or a list, got \(other.typeName)")
            }
        }
        let filePath = (directory as NSString).appendingPathComponent("chat_template.jinja")
        if name == nil, let data = try FileIO.readSmallFile(filePath) {
            source = String(decoding: data, as: UTF8.self)
            origin = filePath
        }
        guard let source else { return nil }
        return (source, origin, tokens)
    }

    /// The chat format, or an error saying the model has none.
    public func requireChatFormat(name: String? = nil, templateFile: String? = nil) throws -> ChatFormat {
        guard let f = try chatFormat(name: name, templateFile: templateFile) else { throw ChatFormatError.noTemplate(gguf?.path ?? directory) }
        return f
    }
}
