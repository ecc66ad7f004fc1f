import Foundation
import FuzzSupport
import Strata

/// A chat template and the conversation it renders, both fuzzed: the bytes before the first NUL
/// are the template, the rest the request's `messages` (a JSON array of message objects; other
/// JSON is wrapped as one user message's content, and bytes that are not JSON become alternating
/// user/assistant messages split at newlines). Rendering ends in text or a JinjaError, never a
/// trap, a stack overflow or a hang (the sandbox: overflow-checked integers, a step budget,
/// nesting limits).
func messages(_ bytes: ArraySlice<UInt8>) -> JSONValue {
    if let v = try? JSONValue.parse(Data(bytes)) {
        if case let .array(items) = v, items.allSatisfy({ if case .object = $0 { return true }; return false }) { return v }
        return .array([.object([("role", .string("user")), ("content", v)])])
    }
    let text = String(decoding: bytes, as: UTF8.self)
    let parts = text.split(separator: "\n", omittingEmptySubsequences: false).prefix(64)
    return .array(parts.enumerated().map { i, p in
        .object([("role", .string(i % 2 == 0 ? "user" : "assistant")), ("content", .string(String(p)))])
    })
}

func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let cut = bytes.firstIndex(of: 0) ?? bytes.count
    let source = String(decoding: bytes[..<cut], as: UTF8.self)
    guard let t = try? ChatTemplate(source) else { return 0 }
    t.template.maxOutputBytes = 1 << 20
    t.template.maxSteps = 200_000
    let msgs = messages(cut < bytes.count ? bytes[(cut + 1)...] : [])
    let tools = try! JSONValue.parse(#"[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}]"#)
    _ = try? t.render(messages: msgs, tools: size % 2 == 0 ? tools : nil, addGenerationPrompt: size % 3 == 0,
                      specialTokens: ["bos_token": "<s>", "eos_token": "</s>"], extra: ["enable_thinking": .bool(size % 5 == 0)])
    return 0
}

runFuzzer { data, size in data.map { fuzzOne($0, size) } ?? 0 }
