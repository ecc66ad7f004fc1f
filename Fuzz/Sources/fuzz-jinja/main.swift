import Foundation
import FuzzSupport
import Strata

/// A chat template: compiled and rendered over a fixed conversation, or a JinjaError (the
/// sandbox's limits keep it finite).
let messages = try! JSONValue.parse(#"[{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}, {"role": "tool", "content": "42"}]"#)

func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let source = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let t = try? ChatTemplate(source) {
        t.template.maxOutputBytes = 1 << 20
        _ = try? t.render(messages: messages, addGenerationPrompt: true, specialTokens: ["bos_token": "<s>", "eos_token": "</s>"])
    }
    return 0
}

runFuzzer { data, size in data.map { fuzzOne($0, size) } ?? 0 }
