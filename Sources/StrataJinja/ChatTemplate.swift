/// A model's chat template, rendered the way transformers' `apply_chat_template` renders it:
/// `messages`, `tools` and `documents` (none when absent), `add_generation_prompt`, and the
/// special tokens (`bos_token`, `eos_token`, ...) as variables.
public final class ChatTemplate: @unchecked Sendable {
    public let source: String
    public let template: Template

    /// Compiles `source`; a syntax error throws `JinjaError.syntax` with the line and column.
    public init(_ source: String) throws {
        self.source = source
        template = try Template(source)
    }

    /// The prompt text of a conversation. `messages` is an array of objects with `role` and
    /// `content` (and `tool_calls`, `tool_call_id`, ... as the template reads them); `tools`
    /// the OpenAI-style tool schemas; `extra` more variables (`enable_thinking`, ...).
    /// A template that calls `raise_exception` throws `JinjaError.raised` with its message.
    public func render(messages: JSONValue, tools: JSONValue? = nil, addGenerationPrompt: Bool,
                       specialTokens: [String: String] = [:], extra: [String: JSONValue] = [:]) throws -> String {
        var ctx: [String: Value] = [:]
        for (k, v) in specialTokens { ctx[k] = .string(v) }
        for (k, v) in extra { ctx[k] = Value(json: v) }
        ctx["messages"] = Value(json: messages)
        ctx["tools"] = tools.map(Value.init(json:)) ?? Value.none
        ctx["documents"] = ctx["documents"] ?? Value.none
        ctx["add_generation_prompt"] = .bool(addGenerationPrompt)
        return try template.render(ctx)
    }
}
