import ArgumentParser
import CEditLine
import Foundation
import Strata

/// The chat's input: on a terminal, libedit's readline (line editing, history recalled with the
/// arrow keys and kept in ~/.cache/strata/chat_history); otherwise lines of standard input.
/// libedit is the BSD line editor Debian ships (libedit-dev), the one Swift's own REPL and
/// many CLIs link; Swift has no maintained pure-Swift line editor among the packages that resolve
/// here.
final class ChatInput {
    let interactive = isatty(0) != 0
    let historyPath: String
    init() {
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        let dir = (home as NSString).appendingPathComponent(".cache/strata")
        historyPath = (dir as NSString).appendingPathComponent("chat_history")
        guard interactive else { return }
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        using_history()
        _ = read_history(historyPath)
    }

    /// The next line (nil at end of input), shown after `prompt` on a terminal.
    func line(_ prompt: String = "> ") -> String? {
        guard interactive else { return readLine() }
        guard let p = readline(prompt) else { return nil }
        defer { free(p) }
        let s = String(cString: p)
        if !s.trimmingCharacters(in: .whitespaces).isEmpty {
            add_history(p)
            _ = write_history(historyPath)
        }
        return s
    }
}

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with an instruct model in the terminal (its chat template, the conversation kept).",
        discussion: "Type a message and Enter; \"\"\" on a line of its own starts and ends a message of several lines. /help lists the commands: /reset forgets the conversation, /system TEXT sets the system message, /bye or /exit (or end of input) quits; //text sends /text. Ctrl-C stops an answer and keeps the session (twice quickly exits). After each answer its speed and the prompt tokens computed go to stderr: the conversation's K/V stays in a cache, so a turn computes only its new tokens. The oldest turns are dropped when the conversation outgrows the context.")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder or GGUF file.") var model: String
    @Option(help: "System message.") var system: String?
    @Option(name: [.customLong("max-tokens"), .customShort("n")], help: "Most tokens per answer (default: generation_config.json's max_new_tokens, else 512).") var maxTokens: Int?
    @OptionGroup var sampling: SamplingOptions
    @Flag(name: .customLong("ignore-eos"), help: "Keep answering past end-of-sequence tokens (up to --max-tokens).") var ignoreEOS = false
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
        var params = sampling.parameters(loaded.folder, maxTokens: maxTokens, fallback: 512)
        if ignoreEOS { params.stopAtEOS = false }
        try params.validate()
        // the conversation's K/V, kept between turns; Ctrl-C stops the answer, not the session
        let conversation = try Generator.Conversation(loaded, kvType: kvType)
        var generator = Generator(loaded, kvType: kvType)
        generator.shouldStop = { Interrupt.requested }
        Interrupt.setNotice("\n(Ctrl-C: an answer stops; twice at once exits)\n")
        Interrupt.install()
        let context = loaded.spec.maxPositions
        var systemMessage = system
        var turns: [(String, String)] = []   // (user, assistant)
        let input = ChatInput()
        while let line = input.line() {
            Interrupt.reset()   // a Ctrl-C from now on stops this message's answer
            var text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "\"\"\"" {
                // a message of several lines, up to a closing """ (or the end of input)
                var lines: [String] = []
                while let more = input.line("... "), more.trimmingCharacters(in: .whitespaces) != "\"\"\"" { lines.append(more) }
                text = lines.joined(separator: "\n")
                if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { continue }
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
                case "/reset": turns.removeAll(); conversation.clear(); eprint("(conversation cleared)")
                case "/system":
                    systemMessage = String(text.dropFirst(7)).trimmingCharacters(in: .whitespaces)
                    turns.removeAll()
                    eprint("(system message set; conversation cleared)")
                default: eprint("unknown command \(word) (/help lists them; //text sends a message that starts with /)")
                }
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
            if ids.isEmpty { continue }
            if ids.count + 1 >= context { eprint("the message is longer than the context (\(ids.count) of \(context) tokens)"); continue }
            if dropped > 0 { turns.removeFirst(dropped); eprint("(\(dropped) oldest turn\(dropped == 1 ? "" : "s") dropped to fit the context)") }
            var p = params
            p.maxTokens = min(params.maxTokens, context - ids.count)
            let out = FileHandle.standardOutput
            let result = try generator.generate(promptIDs: ids, parameters: p, conversation: conversation) { tok in
                if !tok.text.isEmpty { out.write(Data(tok.text.utf8)) }
                return true
            }
            Interrupt.reset()
            out.write(Data("\n".utf8))
            eprint(String(format: "(%d tokens at %.1f tokens/s; prompt %d tokens, %d computed in %.2f s, %d reused)", result.ids.count,
                          result.decodeTokensPerSecond, ids.count, ids.count - result.reusedPromptTokens, result.prefillSeconds,
                          result.reusedPromptTokens) + (result.stopReason == .cancelled ? " (stopped)" : ""))
            turns.append((text, result.text))
        }
    }
}
