import ArgumentParser
import Foundation
import Strata

struct ChatTemplateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-template",
        abstract: "Render a conversation with the model's chat template; prints {\"text\": \"...\"}.",
        discussion: """
        FILE.json holds {"messages": [...], "tools": [...]} (tools optional; other keys become template variables, e.g. \
        "enable_thinking": false). A template that raises (raise_exception) exits non-zero with its message. \
        STRATA_DATE=YYYY-MM-DD fixes the date strftime_now sees.
        """)
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder or GGUF file.") var model: String
    @Option(help: "JSON file with the conversation ({\"messages\": [...], \"tools\": [...]}); - reads standard input.") var messages: String
    @Flag(name: .customLong("add-generation-prompt"), help: "End with the assistant's turn opening (what generation continues).") var addGenerationPrompt = false
    @Option(name: .customLong("template-name"), help: "One of a list of named templates in tokenizer_config.json (e.g. tool_use).") var templateName: String?
    @Option(name: .customLong("chat-template"), help: "A Jinja chat template file used instead of the model's.") var chatTemplate: String?
    @Flag(help: "Also print the prompt's token ids (encoded without adding BOS: the template writes it).") var ids = false

    func run() throws {
        let data: Data
        if messages == "-" { data = FileHandle.standardInput.readDataToEndOfFile() } else {
            guard let d = FileManager.default.contents(atPath: messages) else { throw ValidationError("cannot read \(messages)") }
            data = d
        }
        let doc: JSONValue
        do { doc = try JSONValue.parse(data) } catch { throw ValidationError("\(messages): \(error)") }
        guard case let .object(pairs) = doc, let msgs = doc["messages"], case .array = msgs else {
            throw ValidationError("\(messages): expected an object with a \"messages\" array")
        }
        let folder = try ModelFolder(path: model)
        let format = try folder.requireChatFormat(name: templateName, templateFile: chatTemplate)
        var extra: [String: JSONValue] = [:]
        for (k, v) in pairs where k != "messages" && k != "tools" { extra[k] = v }
        let text = try format.render(messages: msgs, tools: doc["tools"], addGenerationPrompt: addGenerationPrompt, extra: extra)
        var out: [(String, JSONValue)] = [("text", .string(text))]
        if ids, let tok = folder.tokenizer { out.append(("ids", .array(try tok.encode(text, addSpecialTokens: false).map { .int($0) }))) }
        print(JSONValue.object(out).serialized())
    }
}
