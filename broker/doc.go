// Package broker wires a Warren node together: the AMQP listener, virtual hosts, users and the
// sessions that serve each connection. Lower packages hold the semantics: session (connections
// and channels), vhost (the registry), exchange, queue and message.
//
//	s, err := broker.New(broker.Config{AMQPListen: "127.0.0.1:5672"})
//	if err := s.Start(); err != nil { ... }
//	defer s.Close()
package broker
