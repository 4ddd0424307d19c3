"""Pure translation between the Anthropic Messages API and the OpenAI Responses API.

Nothing in this package does I/O, reads configuration or keeps state between requests, so
every piece is unit-testable and safe to call from any task or thread. The flow, per request:

1. ``messages.parse_messages_request(body)`` → ``MessagesRequest`` (validated once);
2. ``request.translate_request(req, settings, session_id=...)`` → ``UpstreamRequest`` (the
   Responses body, the tool-name map, requested/upstream model, conversation id), plus
   ``request.identity_headers(...)`` for the upstream headers;
3. ``stream.StreamTranslator(...).feed(event)`` per upstream event → Anthropic events, then
   ``finish()`` at EOF; failures come out as classified ``PackydError`` (``errors.py``);
4. ``aggregate.Aggregator`` folds those events into one Message for non-streaming clients.
"""
