import ArgumentParser
import Foundation
import Strata

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with an instruct model in the terminal (its chat template, the conversation kept).",
        discussion: "Type a message and Enter; \"\"\" on a line of its own starts and ends a message of several lines. /help lists the commands: /reset forgets the conversation, /system TEXT sets the system message, /bye or /exit (or end of input) quits; //text sends /text. After each answer its speed goes to stderr. The oldest turns are dropped when the conversation outgrows the context.")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder or GGUF file.") var model: String
    @Option(help: "System message.") var system: String?
    @Option(name: [.customLong("max-tokens"), .customShort("n")], help: "Most tokens per answer (default: generation_config.json's max_new_tokens, else 512).") var maxTokens: Int?
    @OptionGroup var sampling: SamplingOptions
    @Option(name: .customLong("template-name"), help: "One of a list of named chat templates.") var templateName: String?
    @Option(name: .customLong("chat-template"), help: "A Jinja chat template file used instead of the model's (a model without one can then chat).") var chatTemplate: String?
    @OptionGroup var threads: ThreadOption
    @OptionGroup var kv: KVTypeOption

    func run() throws {
        try threads.apply()
        let loaded = try LoadedModel(directory: model)
        let kvType = try kv.type(loaded.spec)
        let tokenizer = try loaded.requireTokenizer()
        let format = try loaded.folder.requireChatFormat(name: templateName, templateFile: chatTemplate)
        let params = sampling.parameters(loaded.folder, maxTokens: maxTokens, fallback: 512)
        try params.validate()
        let context = loaded.spec.maxPositions
        var systemMessage = system
        var turns: [(String, String)] = []   // (user, assistant)
        let interactive = isatty(0) != 0
        func prompt() { if interactive { FileHandle.standardError.write(Data("> ".utf8)) } }
        prompt()
        while let line = readLine() {
            var text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { prompt(); continue }
            if text == "\"\"\"" {
                // a message of several lines, up to a closing """ (or the end of input)
                var lines: [String] = []
                while let more = readLine(), more.trimmingCharacters(in: .whitespaces) != "\"\"\"" { lines.append(more) }
                text = lines.joined(separator: "\n")
                if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { prompt(); continue }
            } else if text.hasPrefix("//") {
                text.removeFirst()  // a message that starts with a slash
            } else if text.hasPrefix("/") {
                let word = String(text.prefix { !$0.isWhitespace })
                switch word {
                case "/exit", "/quit", "/bye": return
                case "/help", "/?":
                    eprint("""
                    /reset          forget the conversation
                    /system TEXT    set the system message (and forget the conversation)
                    /bye, /exit     quit (so does the end of input)
                    \"\"\"             on a line of its own: start, then end, a message of several lines
                    //text          send a message that starts with /text
                    """)
                case "/reset": turns.removeAll(); eprint("(conversation cleared)")
                case "/system":
                    systemMessage = String(text.dropFirst(7)).trimmingCharacters(in: .whitespaces)
                    turns.removeAll()
                    eprint("(system message set; conversation cleared)")
                default: eprint("unknown command \(word) (/help lists them; //text sends a message that starts with /)")
                }
                prompt()
                continue
            }
            var ids: [Int] = []
            var dropped = 0
            while true {
                var messages: [JSONValue] = []
                if let s = systemMessage, !s.isEmpty { messages.append(.object([("role", "system"), ("content", .string(s))])) }
                for (u, a) in turns.dropFirst(dropped) {
                    messages.append(.object([("role", "user"), ("content", .string(u))]))
                    messages.append(.object([("role", "assistant"), ("content", .string(a))]))
                }
                messages.append(.object([("role", "user"), ("content", .string(text))]))
                let rendered: String
                do { rendered = try format.render(messages: .array(messages)) } catch {
                    eprint("the chat template refused the conversation: \(error)")
                    ids = []
                    break
                }
                ids = try tokenizer.encode(rendered, addSpecialTokens: false)
                if ids.count + 1 < context || dropped >= turns.count { break }
                dropped += 1
            }
            if ids.isEmpty { prompt(); continue }
            if ids.count + 1 >= context { eprint("the message is longer than the context (\(ids.count) of \(context) tokens)"); prompt(); continue }
            if dropped > 0 { turns.removeFirst(dropped); eprint("(\(dropped) oldest turn\(dropped == 1 ? "" : "s") dropped to fit the context)") }
            var p = params
            p.maxTokens = min(params.maxTokens, context - ids.count)
            let out = FileHandle.standardOutput
            let result = try Generator(loaded, kvType: kvType).generate(promptIDs: ids, parameters: p) { tok in
                if !tok.text.isEmpty { out.write(Data(tok.text.utf8)) }
                return true
            }
            out.write(Data("\n".utf8))
            eprint(String(format: "(%d tokens at %.1f tokens/s; prompt %d tokens in %.2f s)", result.ids.count,
                          result.decodeTokensPerSecond, ids.count, result.prefillSeconds))
            turns.append((text, result.text))
            prompt()
        }
    }
}
