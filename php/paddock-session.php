<?php

// Stores this site's PHP sessions in Paddock: one php.ini line,
//
//     auto_prepend_file=/path/to/paddock/php/paddock-session.php
//
// and no change to the application. Settings, the first found winning:
// the environment (PADDOCK_HTTP_ENDPOINTS=host:port,host:port,
// PADDOCK_SESSION_LOCK_TTL and PADDOCK_SESSION_WAIT in seconds,
// PADDOCK_SESSION_MODE=write-through|delayed), then php.ini (paddock.endpoints,
// paddock.session_lock_ttl, paddock.session_wait, paddock.session_mode),
// then the defaults (127.0.0.1:2282, the local node; a 30 s lock lease,
// waited for as long). session.save_path is ignored. See docs/php.md.

declare(strict_types=1);

require_once __DIR__ . '/autoload.php';

\Paddock\SessionHandler::register();
